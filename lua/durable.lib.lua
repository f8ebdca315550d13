-- Durable delivery's storage (docs/contract.md §11). Stanzas the web
-- service could not take are kept in Prosody's storage (as the admin
-- configured it), keyed by delivery id, until delivered or given up; given-up
-- ones stay in a dead-letter store. The native library decides what is held;
-- this writes what it says, reads the stores back at load, and does the admin
-- shell's list, replay, retry and purge. The native side keeps the counts.

local WAITING, DEAD = "component_http_waiting", "component_http_dead";

local function store_set(store, id, value)
	local ok, done, err = pcall(store.set, store, id, value);
	if not (ok and done) then
		module:log("error", "Storage of held stanza %s failed: %s", id, tostring(ok and err or done));
	end
end

-- Every record of a store, as { id=, stanza=, received=, ... }, oldest first.
local function stored(store)
	local records = {};
	local ok, err = pcall(function ()
		for id in store:users() do
			local data = store:get(id);
			if type(data) == "table" and data.stanza then
				data.id = id;
				table.insert(records, data);
			end
		end
	end);
	if not ok then
		module:log("error", "Reading held stanzas from storage failed: %s", tostring(err));
	end
	table.sort(records, function (a, b) return (a.received or 0) < (b.received or 0); end);
	return records;
end

-- How many records a store has, without reading them.
local function count_records(store)
	local n = 0;
	local ok, err = pcall(function ()
		for _ in store:users() do
			n = n + 1;
		end
	end);
	if not ok then
		module:log("error", "Counting held stanzas in storage failed: %s", tostring(err));
	end
	return n;
end

local function brief(record)
	local stanza = record.stanza:gsub("%s+", " ");
	if #stanza > 120 then
		stanza = stanza:sub(1, 117).."...";
	end
	return ("%s  %s  %s"):format(record.id, os.date("!%Y-%m-%dT%H:%M:%SZ",
		math.floor((record.received or 0) / 1000)), stanza);
end

local durable = {};

-- Durable delivery on: opens the stores, hands what they hold to `held`
-- (native.new_durable: the native side's held stanzas and counts), deletes
-- dead letters older than `dead_letter_age` seconds (now, then every hour
-- or as often as that age when shorter), and returns { hold, release, dead =
-- (the storage effects), counts = () → held, circuit open, dead letters,
-- admin = { list, replay, purge, retry }, stop = (no more sweeps) }.
function durable.open(held, dead_letter_age)
	local waiting_store = module:open_store(WAITING);
	local dead_store = module:open_store(DEAD);

	-- The storage effects of the native side (see the main file).
	local function hold(id, stanza, received)
		store_set(waiting_store, id, { stanza = stanza, received = received });
	end

	local function release(id)
		store_set(waiting_store, id, nil);
	end

	local function dead(id, stanza, received, reason)
		store_set(dead_store, id, { stanza = stanza, received = received, died = os.time(), reason = reason });
		store_set(waiting_store, id, nil);
	end

	local admin = {};

	function admin.counts()
		return held:held_counts();
	end

	function admin.list(print)
		local records, open = held:held();
		print(("waiting: %d%s"):format(#records, open and " (circuit open)" or ""));
		for _, record in ipairs(records) do
			print("  "..brief(record));
		end
		local dead = stored(dead_store);
		print(("dead letters: %d"):format(#dead));
		for _, record in ipairs(dead) do
			print("  "..brief(record).."  ("..tostring(record.reason)..")");
		end
		return #records + #dead;
	end

	-- Dead letters back to the waiting list, as if they arrived now.
	function admin.replay(id)
		local replayed = {};
		for _, record in ipairs(stored(dead_store)) do
			if id == nil or record.id == id then
				table.insert(replayed, { id = record.id, stanza = record.stanza, received = record.received });
				store_set(dead_store, record.id, nil);
			end
		end
		held:replay(replayed);
		return #replayed;
	end

	function admin.purge(which, id)
		if which == "waiting" then
			return held:purge(id); -- senders get an error through the fd
		end
		local purged = 0;
		for _, record in ipairs(stored(dead_store)) do
			if id == nil or record.id == id then
				store_set(dead_store, record.id, nil);
				purged = purged + 1;
			end
		end
		held:forget_dead_letters(purged);
		return purged;
	end

	function admin.retry()
		-- Counted first: once hurried, the worker may deliver some at once.
		local waiting = held:held_counts();
		held:retry_held();
		return waiting;
	end

	-- Dead letters are kept for the admin to look at, not for ever.
	local function expire_dead_letters()
		local oldest = os.time() - dead_letter_age;
		local expired = 0;
		for _, record in ipairs(stored(dead_store)) do
			if (record.died or 0) < oldest then
				store_set(dead_store, record.id, nil);
				expired = expired + 1;
			end
		end
		if expired > 0 then
			held:forget_dead_letters(expired);
			module:log("info", "Deleted %d dead letters older than %d s (component_post_dead_letter_age)",
				expired, dead_letter_age);
		end
	end

	local records = stored(waiting_store);
	held:restore(records, count_records(dead_store));
	if #records > 0 then
		module:log("info", "Delivering %d stanzas held from before", #records);
	end
	expire_dead_letters();
	local sweep = module:add_timer(math.min(dead_letter_age, 3600), function ()
		expire_dead_letters();
		return math.min(dead_letter_age, 3600);
	end);
	return {
		counts = admin.counts;
		hold = hold;
		release = release;
		dead = dead;
		admin = admin;
		stop = function () sweep:stop(); end;
	};
end

-- Durable delivery off: stanzas held while it was on are kept, not
-- delivered, and the admin hears how many at each load.
function durable.warn_if_held()
	local held = count_records(module:open_store(WAITING));
	if held > 0 then
		module:log("warn", "%d stanzas held by component_post_durable wait in storage:"
			.." set it to true again to deliver them", held);
	end
end

return durable;
