-- mod_component_http: every stanza sent to this component is POSTed as JSON
-- to a web service, and the JSON answer becomes the reply.
--
-- This file is the wiring: options, hooks, the watched descriptor, metrics.
-- Beside it: push.lib.lua (the push endpoint), durable.lib.lua (durable
-- delivery's storage), rooms.lib.lua (group chat), menu.lib.lua (the menu
-- of commands) and shell.lib.lua (admin shell commands). Conversion, HTTP and the reply rules live in the native
-- library, component_http.so,
-- built from the Rust crate of this project. The contract: docs/contract.md.

local set = require "util.set";
local server = require "net.server";

local NATIVE_NAME = "component_http";
-- Stamped by `make` from Cargo.toml: the native library this shim expects.
local VERSION = "@VERSION@";

-- What the module before a reload handed over (module.save, below): its
-- deliveries, still owing answers, the pushed IQs waiting for theirs, and
-- the delivery whose command sessions go on here.
local inherited = module.saved_state or {};

-- The effect protocol (docs/architecture.md): every native call that acts
-- answers with its effects, a flat list of each effect's name followed by
-- its values (native.effects says how many), then at most one value. `on`
-- does each effect; until the wiring below sets a name, it is logged.
local on = setmetatable({}, { __index = function (_, name)
	return function ()
		module:log("error", "No handler for the native effect %q", tostring(name));
	end;
end });
local arity;

local function apply(effects)
	if not effects then return; end
	local i, n = 1, #effects;
	while i <= n do
		local name = effects[i];
		on[name](effects[i + 1], effects[i + 2], effects[i + 3], effects[i + 4]);
		i = i + 1 + arity[name];
	end
end

local function act(f, ...)
	local effects, value = f(...);
	apply(effects);
	return value;
end

-- Calls native `f`, applies its effects and returns its value. A Lua error
-- (from either) is logged as "Could not <what> <stanza>" and nil returned:
-- escaping a hook it would reach the sender's session, or net.server.
local function call(what, stanza, f, ...)
	local ok, value = pcall(act, f, ...);
	if not ok then
		module:log("error", "Could not %s %s: %s", what, stanza and stanza:top_tag() or "", tostring(value));
		return nil;
	end
	return value;
end

function on.send(stanza)
	local ok, err = pcall(module.send, module, stanza);
	if not ok then
		module:log("error", "Could not send %s: %s", stanza:top_tag(), err);
	end
end

function on.log(level, text)
	module:log(level, "%s", text);
end

-- A load that fails after a reload answers what was handed over, as an
-- unload would: nothing is left unanswered.
local function bounce_inherited()
	-- Handed over, so the native library is loaded: its arities are known.
	arity = arity or package.loaded["mod_component_http.native"].effects;
	for _, old in ipairs(inherited.deliveries or {}) do
		call("answer what was handed over", nil, old.stop, old, false);
	end
	if inherited.pushed_iqs then
		pcall(module:require("push").refuse, inherited.pushed_iqs, "the module failed to load");
	end
	inherited = {};
end

-- A table error skips the traceback Prosody adds to a failed load, so the
-- admin gets one log line that says what to fix.
local function load_error(message, ...)
	bounce_inherited();
	local text = message:format(...);
	error(setmetatable({}, { __tostring = function () return text; end }), 0);
end

-- The library sits beside this file when installed by folder copy; a
-- luarocks tree keeps it under lib/ rather than share/. Found from
-- module.path, since module:get_directory() is the rock's metadata folder.
local function native_candidates()
	local dir = (module.path or ""):match("^(.*)/[^/]*$") or ".";
	local lua_version = _VERSION:match("%d+%.%d+");
	local candidates = { dir.."/"..NATIVE_NAME..".so" };
	local tree = dir:match("^(.*)/share/lua/[%d.]+$") or dir:match("^(.*)/share/lua/[%d.]+/[^/]+$");
	if tree then
		table.insert(candidates, tree.."/lib/lua/"..lua_version.."/"..NATIVE_NAME..".so");
	end
	return candidates;
end

local function load_native()
	-- Cached process-wide: a second component host or a reload reuses the
	-- library already loaded (a loaded .so is never loaded twice).
	local cached = package.loaded["mod_component_http.native"];
	if cached then return cached; end
	local tried = {};
	for _, path in ipairs(native_candidates()) do
		local open, err = package.loadlib(path, "luaopen_"..NATIVE_NAME);
		if open then
			local native = open();
			package.loaded["mod_component_http.native"] = native;
			return native;
		end
		table.insert(tried, ("%s (%s)"):format(path, err));
	end
	load_error("cannot load the native library: tried %s", table.concat(tried, "; "));
end

local native = load_native();
arity = native.effects;
if native.version ~= VERSION and VERSION ~= "@".."VERSION@" then
	-- A reload loads a new shim, but the library already in the process
	-- stays: only a restart loads a new one.
	module:log("warn", "This module is version %s but the native library loaded in Prosody is %s:"
		.." restart Prosody to load the new library", VERSION, native.version);
end

local function number_option(name, default, what)
	local value = module:get_option_number(name, default);
	if value == nil then -- Prosody has logged that it is not a number
		load_error("%s = %q must be %s", name, tostring(module:get_option(name)), what or "a number");
	end
	return value;
end

-- Durations: seconds as a number, or (where Prosody reads periods: 13 and
-- later) a period such as "30s" or "1 day".
local function duration_option(name, default)
	if not module.get_option_period then
		return number_option(name, default, "a number of seconds (Prosody 13 also reads periods such as \"30s\")");
	end
	local value = module:get_option_period(name, default);
	if value == nil then -- Prosody has logged that it is not a period
		load_error("%s = %q must be a number of seconds or a period such as \"30s\" or \"1 day\"",
			name, tostring(module:get_option(name)));
	end
	return value;
end

-- How each type of option in native.options is read; the native side
-- validates what is read, and holds every option's default and help.
local readers = {
	string = function (option) return module:get_option_string(option.name, option.default); end;
	number = function (option) return number_option(option.name, option.default); end;
	duration = function (option) return duration_option(option.name, option.default); end;
	boolean = function (option) return module:get_option_boolean(option.name, option.default); end;
	array = function (option) return module:get_option_array(option.name); end;
	path = function (option) return module:get_option_path(option.name, nil, "config"); end;
	table = function (option)
		local value = module:get_option(option.name);
		if value ~= nil and type(value) ~= "table" then
			load_error("%s must be a table of header names and values", option.name);
		end
		return value;
	end;
	-- A set, handed over as a list; the original module's name still works.
	set = function (option)
		local value = module:get_option_set(option.name);
		if not value and option.alias then
			value = module:get_option_set(option.alias);
			if value then
				module:log("warn", "Option %s is deprecated, rename it to %s", option.alias, option.name);
			end
		end
		local list = {};
		for item in value or set.new(option.default) do
			table.insert(list, item);
		end
		return list;
	end;
};

local options = { host = module.host };
for _, option in ipairs(native.options) do
	options[option.key] = readers[option.type](option);
end

-- new_delivery answers nil and a reason for a bad option (say, a header
-- value that is not a string); pcall: a Lua error is reported the same way.
local ok, delivery, config_err = pcall(native.new_delivery, options);
if not ok then
	load_error("invalid option: %s", tostring(delivery):match("^[^\n]*"));
elseif not delivery then
	load_error("%s", config_err);
end
for _, warning in ipairs(delivery:warnings()) do
	module:log("warn", "%s", warning);
end

-- A reload: the deliveries of the module before go on with what they owe
-- (what waits is POSTed as this config says), watched until they owe
-- nothing; this one's stanzas of a conversation wait for theirs.
local retired = {}; -- delivery -> its descriptor's watcher, once watched
local retired_order = {}; -- the same, oldest first (as handed over)
for _, old in ipairs(inherited.deliveries or {}) do
	delivery:take_over(old);
	retired[old] = false;
	table.insert(retired_order, old);
end

-- Commands (menu.lib.lua): the menu the web service pushed, read back, and
-- the sessions of the module before a reload, taken over.
on.save_menu = module:require("menu").start(delivery, call);
if inherited.sessions then
	delivery:take_sessions(inherited.sessions);
end

-- Group chat (rooms.lib.lua): the rooms this host is in.
local rooms = module:require("rooms").start(native, delivery, call, options.nick);
on.remember_room, on.forget_room, on.wake_rooms = rooms.remember, rooms.forget, rooms.wake;


-- Metrics, under prosody_mod_component_http/… in Prosody's statistics.
local requests = module:metric("counter", "requests", "",
	"Stanzas delivered to the web service, by outcome (status class, timeout, unreachable, refused, ...)",
	{ "outcome" });
-- One counter per outcome, looked up once rather than per stanza.
local requests_by_outcome = setmetatable({}, { __index = function (counters, outcome)
	local counter = requests:with_labels(outcome);
	counters[outcome] = counter;
	return counter;
end });
local duration = module:metric("histogram", "duration", "seconds",
	"Time from a stanza's arrival to its outcome, retries included", {},
	{ buckets = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30 } }):with_labels();
local retries = module:metric("counter", "retries", "", "Extra attempts made after a failed POST", {})
	:with_labels();
local in_flight = module:metric("gauge", "in_flight", "", "POSTs in progress", {}):with_labels();
local queued = module:metric("gauge", "queued", "", "Stanzas waiting for a free slot", {}):with_labels();
local held_gauge = module:metric("gauge", "held", "",
	"Durable delivery: stanzas held in storage until the web service takes them", {}):with_labels();
local rooms_gauge = module:metric("gauge", "rooms", "", "Group chats this host is in", {}):with_labels();
local errors_withheld = module:metric("counter", "errors_withheld", "",
	"Stanza errors not sent to a room or its occupants (the room would kick the bot)", {}):with_labels();
local dead_gauge = module:metric("gauge", "dead_letters", "",
	"Durable delivery: stanzas given up after component_post_max_age, kept in storage", {}):with_labels();

function on.report(outcome, seconds, extra_attempts)
	requests_by_outcome[outcome]:add(1);
	if seconds then
		duration:sample(seconds);
	end
	if extra_attempts > 0 then
		retries:add(extra_attempts);
	end
end

function on.withheld()
	errors_withheld:add(1);
end

-- Who may talk to the bot (docs/contract.md §16): stanzas not POSTed
-- because their sender is not in component_post_allow, by kind.
local disallowed = module:metric("counter", "disallowed", "",
	"Stanzas not POSTed: their sender is not in component_post_allow", { "kind" });

function on.disallowed(kind)
	disallowed:with_labels(kind):add(1);
end

-- Files (docs/contract.md §14): uploads by outcome ("done", or how they
-- failed), and the bytes uploaded.
local uploads = module:metric("counter", "uploads", "",
	"Files of replies and pushes uploaded (done), or not (invalid, too_large, quota, forbidden, unavailable, timeout)",
	{ "outcome" });
local upload_bytes = module:metric("counter", "uploaded", "bytes", "Bytes of files uploaded", {}):with_labels();

function on.uploaded(outcome, bytes)
	uploads:with_labels(outcome):add(1);
	if bytes > 0 then
		upload_bytes:add(bytes);
	end
end

-- What the admin shell's webhook:status() shows of this host.
local shell_state = { delivery = delivery, rooms = rooms };

-- The module's status as it follows the web service.
function on.status(level, text, overrides)
	module:set_status(level, text, overrides);
end

-- What the shell shows as the last problem.
function on.log(level, text)
	module:log(level, "%s", text);
	if level == "warn" or level == "error" then
		shell_state.last_error = os.date("!%Y-%m-%d %H:%M:%SZ ")..text;
	end
end

local function close_watcher(watcher)
	if watcher.close then
		watcher:close();
	else -- libevent's handle has no close()
		watcher:setflags(false, false);
	end
end

-- Calls `drain` when `d`'s descriptor is readable.
local function watch(d, drain)
	return server.watchfd(d:fd(), drain);
end

-- A retired delivery is drained until it owes nothing, then let go. Once
-- nothing is owed every outcome is queued, so the last drain gets them all.
local function drain_retired(old)
	call("deliver replies", nil, old.drain, old);
	if old:owes() == 0 and retired[old] ~= nil then
		call("deliver replies", nil, old.drain, old);
		if retired[old] then
			close_watcher(retired[old]);
		end
		retired[old] = nil;
		native.close_delivery(old);
	end
end

-- Whichever descriptor is readable, every delivery is drained, oldest
-- first: a conversation's stanza owned by a newer delivery is POSTed only
-- once the one before it (owned by an older one) has its outcome queued,
-- but the workers may raise the newer descriptor first, so draining only
-- that one could send the replies out of order.
local function drain_all()
	if retired_order[1] == nil then -- (the usual case: no table made)
		return call("deliver replies", nil, delivery.drain, delivery);
	end
	local still = {};
	for _, old in ipairs(retired_order) do
		if retired[old] ~= nil then
			drain_retired(old);
		end
		if retired[old] ~= nil then
			table.insert(still, old);
		end
	end
	retired_order = still;
	call("deliver replies", nil, delivery.drain, delivery);
end

local watcher = watch(delivery, drain_all);
for _, old in ipairs(retired_order) do
	retired[old] = watch(old, drain_all);
end
drain_all();

-- Durable delivery's counts and its sweep's stop, when it is on (below).
local held_counts, durable_stop;

module:hook_global("stats-update", function ()
	local running, waiting = delivery:counts();
	for old in pairs(retired) do
		local old_running, old_waiting = old:counts();
		running, waiting = running + old_running, waiting + old_waiting;
	end
	in_flight:set(running);
	queued:set(waiting);
	rooms_gauge:set(#rooms.joined());
	if options.durable then
		local held, _, dead_letters = held_counts();
		held_gauge:set(held);
		dead_gauge:set(dead_letters);
	end
end);

if options.durable then
	local durable_store = module:require("durable").open(native.new_durable(delivery), options.dead_letter_age);
	shell_state.durable = durable_store.admin;
	held_counts = durable_store.counts;
	on.hold, on.release, on.dead = durable_store.hold, durable_store.release, durable_store.dead;
	durable_stop = durable_store.stop;
else
	module:require("durable").warn_if_held();
end

-- The push endpoint (push.lib.lua): off unless component_push_token or
-- component_push_public_key is set.
local push_endpoint;
local endpoint = native.new_push(delivery);
if endpoint then
	push_endpoint = module:require("push").serve(endpoint, call, inherited.pushed_iqs);
	on.push_answer = push_endpoint.respond;
elseif inherited.pushed_iqs then
	module:require("push").refuse(inherited.pushed_iqs, "the push endpoint was turned off");
end

-- Every stanza to the component goes to the native side, read once there
-- (src/receive.rs): a pushed IQ's answer, the rooms' business, the web
-- service's or the component's own answer. It says what to do, and whether
-- the module took the stanza; if not (a message when messages are not
-- forwarded), Prosody answers it. A Lua error is logged and the stanza taken.
local function receive(event)
	if call("handle", event.stanza, native.receive, delivery, rooms.state, endpoint, event.stanza) ~= false then
		return true;
	end
end

-- Above mod_iq, which a component inherits and which would otherwise answer
-- IQs to the bare domain first.
local PRIORITY = 10;

for _, kind in ipairs({ "message", "presence", "iq" }) do
	for _, to in ipairs({ "host", "bare", "full" }) do
		module:hook(kind.."/"..to, receive, PRIORITY);
	end
end

-- Admin shell commands (shell.lib.lua).
local leave_shell = module:require("shell").register(shell_state);

module:log("info", "Forwarding %s to the web service%s", tostring(set.new(options.stanzas)),
	options.durable and ", holding what it cannot take (durable)" or "");
if delivery:signing_public_key() then
	-- The public half only: it is what the web service verifies with.
	module:log("info", "Signing requests with ed25519 (v1a); the web service verifies with %s",
		delivery:signing_public_key());
end

-- Every stanza still in flight gets an error reply now (or is held in
-- storage, with durable delivery), and every pushed IQ still waiting an HTTP
-- answer gets one.
local stopped = false;
local function stop(shutting_down)
	if stopped then return; end
	stopped = true;
	for old in pairs(retired) do
		call("stop", nil, old.stop, old, shutting_down);
	end
	local why = call("stop", nil, delivery.stop, delivery, shutting_down);
	if push_endpoint then
		push_endpoint.cancel(why or "the module stopped");
	end
end

-- A reload (module:reload, prosodyctl reload): the next module takes over
-- what this one owes instead of this one answering it with errors. With
-- durable delivery what is in flight is held in storage at the unload and
-- taken from there, as at a restart.
local handed_over = false;
function module.save()
	handed_over = true;
	local state = { pushed_iqs = push_endpoint and push_endpoint.save(), sessions = delivery };
	if not options.durable then
		-- Oldest first, this one last.
		state.deliveries = {};
		for _, old in ipairs(retired_order) do
			if retired[old] ~= nil then
				table.insert(state.deliveries, old);
			end
		end
		table.insert(state.deliveries, delivery);
	end
	return state;
end

-- Prosody does not unload modules when it stops.
module:hook_global("server-stopping", function ()
	stop(true);
end);

function module.unload()
	leave_shell();
	rooms.stop();
	if durable_stop then
		durable_stop();
	end
	close_watcher(watcher);
	for old, old_watcher in pairs(retired) do
		if old_watcher then
			close_watcher(old_watcher);
		end
	end
	if handed_over and not options.durable then
		return; -- the reloaded module answers what is owed
	end
	stop(false);
end
