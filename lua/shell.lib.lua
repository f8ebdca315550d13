-- The admin shell's webhook section: status, and durable delivery's held,
-- retry, replay and purge. Every command names the component host first;
-- `status` without one lists them all. (Not "component_http": Prosody 13's
-- `help SECTION` reads a section's name only up to its first "_".)

local SECTION = "webhook";
local SECTION_DESC = "Deliveries of mod_component_http, and durable delivery's held stanzas";

local set = require "util.set";

-- Each component host of this module: { delivery =, rooms =, durable = (the admin
-- functions of durable.lib.lua, with durable delivery), last_error = }.
local shell_hosts = module:shared("/*/component_http/hosts");
-- What the shell was given once for every host.
local shell_state = module:shared("/*/component_http/shell");

-- The durable delivery of `host`, or nil and why not.
local function durable_of(host)
	local state = shell_hosts[host or ""];
	if not state then
		return nil, "no component_http host "..tostring(host);
	elseif not state.durable then
		return nil, host.." does not have component_post_durable = true";
	end
	return state.durable;
end

-- A command on the durable delivery of the host it names.
local function durable_command(run)
	return function (self, host, ...)
		local admin, err = durable_of(host);
		if not admin then return false, err; end
		return run(self, admin, ...);
	end
end

local HOST_ARG = { name = "host", type = "string" };
local shell_commands = {
	{ name = "status", args = { HOST_ARG },
		desc = "POSTs in flight, stanzas queued and held, and the last error of a component host";
		handler = function (self, host)
			local print, count = self.session.print, 0;
			for name, state in pairs(shell_hosts) do
				if host == nil or host == name then
					local running, waiting = state.delivery:counts();
					local held = state.durable and (", %d held"):format((state.durable.counts())) or "";
					local joined = state.rooms and state.rooms.joined() or {};
					local in_rooms = #joined > 0 and ("; in rooms: "..table.concat(joined, ", ")) or "";
					local commands, sessions = state.delivery:commands();
					local menu = commands > 0 and ("; %d commands, %d running"):format(commands, sessions) or "";
					print(("%s: %d in flight, %d queued%s; last error: %s%s%s"):format(name, running, waiting, held,
						state.last_error or "none", in_rooms, menu));
					count = count + 1;
				end
			end
			return true, ("%d component host%s"):format(count, count == 1 and "" or "s");
		end };
	{ name = "held", args = { HOST_ARG };
		desc = "Durable delivery: the stanzas waiting, and the dead letters";
		handler = durable_command(function (self, admin)
			return true, ("%d stanzas"):format(admin.list(self.session.print));
		end) };
	{ name = "retry", args = { HOST_ARG };
		desc = "Durable delivery: try every waiting stanza now (probes an open circuit)";
		handler = durable_command(function (_, admin)
			return true, ("retrying %d waiting stanzas"):format(admin.retry());
		end) };
	{ name = "replay", args = { HOST_ARG, { name = "id", type = "string" } };
		desc = "Durable delivery: dead letters (all, or the one with this id) back to waiting, as if just arrived";
		handler = durable_command(function (_, admin, id)
			return true, ("%d dead letters replayed"):format(admin.replay(id));
		end) };
	{ name = "purge", args = { HOST_ARG, { name = "list", type = "string" }, { name = "id", type = "string" } };
		desc = 'Durable delivery: give up the "waiting" stanzas (their senders get an error) or delete the "dead"'
			.." letters; all, or the one with this id";
		handler = durable_command(function (_, admin, which, id)
			if which ~= "waiting" and which ~= "dead" then
				return false, 'say which list: "waiting" or "dead"';
			end
			return true, ("%d %s stanzas purged"):format(admin.purge(which, id), which);
		end) };
};

local shell = {};

-- Adds this host, described by `state`, to the shell's commands. Returns the
-- function that takes it out again (at unload).
function shell.register(state)
	shell_hosts[module.host] = state;
	local function unregister()
		if shell_hosts[module.host] == state then
			shell_hosts[module.host] = nil;
		end
	end

	-- Prosody 13 takes shell commands as items, with help and the argument
	-- form (`prosodyctl shell webhook status HOST`), routed to the host
	-- named; 0.12 reads them from the shell's shared environment.
	local have_features, features = pcall(require, "core.features");
	if have_features and features.available:contains("loader") then
		-- A component inherits few modules: the shell's host part, which takes
		-- this host's commands, is loaded here when the admin enabled the shell.
		local enabled = require "core.configmanager".get("*", "modules_enabled");
		local shell_enabled = set.new(type(enabled) == "table" and enabled or {}):contains("admin_shell");
		if shell_enabled then
			module:depends("admin_shell");
		end
		for _, command in ipairs(shell_commands) do
			local item = {
				section = SECTION;
				section_desc = SECTION_DESC;
				name = command.name;
				desc = command.desc;
				args = command.args;
				handler = command.handler;
			};
			if command.name ~= "status" then
				item.host_selector = "host";
				module:add_item("shell-command", item);
			elseif shell_enabled and not shell_state.status_added then
				-- `status` takes a host or none, so it is one command of the
				-- shell's global part (a routed one needs the host), added
				-- once for every host: its handler reads the shared hosts.
				-- Not one of this module's items, which go at its unload.
				shell_state.status_added = true;
				prosody.events.fire_event("item-added/shell-command", { source = module, item = item });
			end
		end
	else
		local shell_env = module:shared("/*/admin_shell/env");
		shell_env[SECTION] = shell_env[SECTION] or {};
		for _, command in ipairs(shell_commands) do
			shell_env[SECTION][command.name] = command.handler;
		end
	end

	return unregister;
end

return shell;
