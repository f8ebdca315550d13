-- Test helper: reloads (or unloads, loads; or re-reads the config file) a
-- module when a test asks through a file. Prosody 0.12's admin shell
-- connection is unreliable on the libevent backend (commands are sometimes
-- never read, with or without our module), so the tests trigger these this
-- way on every backend instead.
local modulemanager = require "core.modulemanager";

local trigger = module:get_option_string("test_reload_trigger");

local actions = {
	reload = modulemanager.reload;
	unload = modulemanager.unload;
	load = modulemanager.load;
	-- As SIGHUP does: the config file again (modules then see it at a reload).
	config = function () return prosody.reload_config(); end;
};

module:add_timer(0.05, function ()
	local f = io.open(trigger);
	if f then
		local request = f:read("*l") or "";
		f:close();
		os.remove(trigger);
		local seq, host, name, action = request:match("^(%d+) (%S+) (%S+) ?(%S*)$");
		action = action ~= "" and action or "reload";
		if seq and actions[action] then
			local ok, err = actions[action](host, name);
			module:log("info", "test %s #%s of %s on %s: %s", action, seq, name, host,
				ok and "ok" or tostring(err));
		end
	end
	return 0.05;
end);
