-- The luarocks build of mod_component_http: `luarocks --lua-version=5.4 make`
-- here builds the native library with cargo and installs the module into a
-- tree (for Prosody, its installer_plugin_path). `make rock` packs a binary
-- rock that `prosodyctl install ./FILE.rock` installs without Rust.
rockspec_format = "3.0"
package = "mod_component_http"
version = "0.1.0-1"
source = {
	url = "git+https://example.invalid/mod_component_http.git",
}
description = {
	summary = "Prosody component whose stanzas are POSTed as JSON to a web service (native core)",
	detailed = [[
		A drop-in successor of the community module mod_component_http: every
		stanza sent to the component is POSTed as JSON to a URL, and the JSON
		answer becomes the reply. HTTP, TLS, JSON and XML run in Rust on
		background threads.
	]],
	license = "MIT",
	labels = { "prosody", "xmpp", "webhook" },
}
dependencies = {
	"lua >= 5.1",
}
build = {
	type = "command",
	-- luarocks sets CC=gcc; cargo would then rebuild every C dependency
	-- rather than reuse an earlier `make` build.
	build_command = "env -u CC make build",
	install = {
		lua = {
			["mod_component_http"] = "build/mod_component_http/mod_component_http.lua",
			-- share/lua/5.4/mod_component_http/push.lua and so on, where
			-- Prosody's module:require("push") looks in a luarocks tree.
			["mod_component_http.push"] = "build/mod_component_http/push.lib.lua",
			["mod_component_http.durable"] = "build/mod_component_http/durable.lib.lua",
			["mod_component_http.rooms"] = "build/mod_component_http/rooms.lib.lua",
			["mod_component_http.menu"] = "build/mod_component_http/menu.lib.lua",
			["mod_component_http.shell"] = "build/mod_component_http/shell.lib.lua",
		},
		lib = {
			["component_http"] = "build/mod_component_http/component_http.so",
		},
	},
}
