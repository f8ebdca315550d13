-- What every spec starts with: Prosody's libraries on the path (PROSODY_SOURCE,
-- Debian's 0.12 by default; 13 names them prosody.util.*, and its loader
-- maps the names), and the native library built for the running Lua
-- (NATIVE_LIB). Returns it.

local prosody_source = os.getenv("PROSODY_SOURCE") or "/usr/lib/prosody";
package.path = prosody_source.."/?.lua;"..package.path;
package.cpath = prosody_source.."/?.so;"..package.cpath;
local loader = io.open(prosody_source.."/loader.lua");
if loader then
	loader:close();
	dofile(prosody_source.."/loader.lua");
end

local library = os.getenv("NATIVE_LIB") or "build/mod_component_http/component_http.so";
return assert(package.loadlib(library, "luaopen_component_http"))();
