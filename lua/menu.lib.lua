-- The menu of ad-hoc commands (docs/contract.md §13.1). The native side
-- holds the menu and the sessions, answers disco and routes each step;
-- this keeps the menu the web service pushed in Prosody's storage, so that
-- it outlives a restart, and reads it back at load.

local MENU_STORE = "component_http_menu";
local KEY = "menu";

local menu = {};

-- Reads the pushed menu back into `delivery` (through `call`, which applies
-- the native side's effects: a log line if it cannot be read). Returns the
-- handler of the save_menu effect: the pushed menu's JSON, or false when
-- the configured one is back.
function menu.start(delivery, call)
	local store = module:open_store(MENU_STORE);
	local ok, saved = pcall(store.get, store, KEY);
	if not ok then
		module:log("error", "Reading the pushed menu failed: %s: serving the configured one", tostring(saved));
	elseif type(saved) == "table" and type(saved.commands) == "string" then
		call("restore the pushed menu", nil, delivery.restore_menu, delivery, saved.commands);
	end

	return function (commands)
		local value = commands and { commands = commands } or nil;
		local set_ok, done, err = pcall(store.set, store, KEY, value);
		if not (set_ok and done) then
			module:log("error", "Keeping the pushed menu failed: %s", tostring(set_ok and err or done));
		end
	end;
end

return menu;
