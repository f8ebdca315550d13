-- Test helper: reloads a module when a test asks through a file.
-- Prosody 0.12's admin shell connection is unreliable on the libevent
-- backend (commands are sometimes never read, with or without our module),
-- so the tests trigger module:reload this way on every backend instead.
local modulemanager = require "core.modulemanager";

local trigger = module:get_option_string("test_reload_trigger");

module:add_timer(0.05, function ()
	local f = io.open(trigger);
	if f then
		local request = f:read("*l") or "";
		f:close();
		os.remove(trigger);
		local seq, host, name = request:match("^(%d+) (%S+) (%S+)$");
		if seq then
			local ok, err = modulemanager.reload(host, name);
			module:log("info", "test reload #%s of %s on %s: %s", seq, name, host,
				ok and "ok" or tostring(err));
		end
	end
	return 0.05;
end);
