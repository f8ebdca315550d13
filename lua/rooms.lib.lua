-- Group chat (docs/contract.md §12): the rooms this component host is in.
-- The native side decides (joins, backoff, which room messages the web
-- service gets, what to remember); this sends its presences, keeps the
-- rooms the web service joined in Prosody's storage, and keeps the timer.

local ROOMS_STORE = "component_http_rooms";

local rooms = {};

-- Starts group chat for `delivery` (which then sends no message or presence
-- error to these rooms): joins the rooms of component_post_rooms and the
-- rooms remembered in storage once the server is ready. `call` calls a
-- native method and applies its effects (see the main file). Returns
-- { state = (the native rooms, for native.receive; what the web service
-- sends goes through them natively), joined = () → list, and the handlers
-- of the rooms' effects: remember, forget, wake }.
function rooms.start(native, delivery, call, nick)
	local state = native.new_rooms(delivery, nick);
	local store = module:open_store(ROOMS_STORE);
	local timer;

	-- Wakes up when the next room's wait to be joined again ends.
	local function wake(after)
		if timer then
			timer:stop();
			timer = nil;
		end
		if after then
			timer = module:add_timer(after, function ()
				timer = nil;
				call("join rooms", nil, state.due, state);
			end);
		end
	end

	local function remember(room, room_nick, jid, mentions_only)
		local saved = { nick = room_nick, jid = jid, mentions_only = mentions_only or nil };
		local ok, err = pcall(store.set, store, room, saved);
		if not ok then
			module:log("error", "Could not remember room %s: %s", room, tostring(err));
		end
	end

	local function forget(room)
		pcall(store.set, store, room, nil);
	end

	local function join_all()
		call("join rooms", nil, state.join_configured, state);
		local ok, err = pcall(function ()
			for room in store:users() do
				local saved = store:get(room);
				if type(saved) == "table" and saved.nick then
					call("join room", nil, state.add, state, room.."/"..saved.nick, saved.jid or module.host,
						saved.mentions_only == true or nil);
				end
			end
		end);
		if not ok then
			module:log("error", "Reading the remembered rooms failed: %s", tostring(err));
		end
	end

	-- At startup the room service may load after this host: wait for the
	-- server to be up. On a reload it is, but this module's hooks are not
	-- yet: a room's answer now would bounce, and the room would drop us.
	local function join_soon()
		module:add_timer(0, join_all);
	end
	if module.on_ready then
		module:on_ready(join_soon);
	elseif prosody.start_time then
		join_soon();
	else
		module:hook_global("server-started", join_soon);
	end

	return {
		state = state;
		remember = remember;
		forget = forget;
		wake = wake;
		joined = function ()
			return state:joined();
		end;
		stop = function ()
			if timer then
				timer:stop();
			end
		end;
	};
end

return rooms;
