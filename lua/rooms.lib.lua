-- Group chat (docs/contract.md §12): the rooms this component host is in.
-- The native side decides (joins, backoff, which room messages the web
-- service gets, what to remember); this sends its presences, keeps the
-- rooms the web service joined in Prosody's storage, and keeps the timer.

local ROOMS_STORE = "component_http_rooms";

local rooms = {};

-- Starts group chat for `delivery` (which then sends no message or presence
-- error to these rooms): joins `configured` (room@service[/nick] each) and the
-- rooms remembered in storage once the server is ready. `send` sends a
-- stanza as the component. Returns { presence = (stanza → true if handled,
-- and whether to POST it), message = (stanza → whether to POST it),
-- outgoing = (a presence this module sends → whether to send it), joined =
-- () → list }.
function rooms.start(native, delivery, send, configured, nick)
	local state = native.new_rooms(delivery, nick);
	local store = module:open_store(ROOMS_STORE);
	local timer;
	local apply;

	local function tick()
		timer = nil;
		apply(state:due());
	end

	-- Wakes up when the next room's wait to be joined again ends.
	local function reschedule()
		if timer then
			timer:stop();
			timer = nil;
		end
		local wait = state:next_wait();
		if wait then
			timer = module:add_timer(wait, tick);
		end
	end

	function apply(effects)
		for _, effect in ipairs(effects) do
			if effect.op == "send" then
				send(effect.stanza);
			elseif effect.op == "log" then
				module:log(effect.level, "%s", effect.text);
			elseif effect.op == "remember" then
				local ok, err = pcall(store.set, store, effect.room, { nick = effect.nick, jid = effect.jid });
				if not ok then
					module:log("error", "Could not remember room %s: %s", effect.room, tostring(err));
				end
			elseif effect.op == "forget" then
				pcall(store.set, store, effect.room, nil);
			end
		end
		reschedule();
	end

	local function join_all()
		for _, room in ipairs(configured or {}) do
			apply(state:add(room, nil));
		end
		local ok, err = pcall(function ()
			for room in store:users() do
				local saved = store:get(room);
				if type(saved) == "table" and saved.nick then
					apply(state:add(room.."/"..saved.nick, saved.jid or module.host));
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

	-- pcall: a Lua error escaping a hook would drop the stanza, and break
	-- the room's broadcast to the occupants after the bot. What cannot be
	-- read here goes on as any stanza: forwarding it says why, and sends no
	-- error to the room.
	local function protected(what, stanza, ...)
		local ok, a, b = pcall(...);
		if not ok then
			module:log("warn", "Could not read %s %s: %s", what, stanza:top_tag(), tostring(a));
		end
		return ok, a, b;
	end

	return {
		presence = function (stanza)
			local ok, effects, post = protected("room presence", stanza, state.presence, state, stanza);
			if not ok or not effects then
				return false;
			end
			apply(effects);
			return true, post;
		end;
		message = function (stanza)
			local ok, post = protected("room message", stanza, state.message, state, stanza);
			return not ok or post;
		end;
		-- Whether to send it (not a join past component_post_max_rooms).
		outgoing = function (stanza)
			local ok, effects, send = protected("presence to a room", stanza, state.outgoing, state, stanza);
			if ok then
				apply(effects);
			end
			return not ok or send;
		end;
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
