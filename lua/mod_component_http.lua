-- mod_component_http: every stanza sent to this component is POSTed as JSON
-- to a web service, and the JSON answer becomes the reply.
--
-- This file is Prosody wiring only: options, hooks, the watched descriptor.
-- Conversion, HTTP and the reply rules live in the native library beside it
-- (component_http.so, built from the Rust crate of this project).

local st = require "util.stanza";
local set = require "util.set";
local server = require "net.server";

local NATIVE_NAME = "component_http";

-- A table error skips the traceback Prosody adds to a failed load, so the
-- admin gets one log line that says what to fix.
local function load_error(message, ...)
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

local defaults = native.defaults;

local function number_option(name, default)
	local value = module:get_option_number(name, default);
	if value == nil then -- Prosody has logged that it is not a number
		load_error("%s = %q must be a number", name, tostring(module:get_option(name)));
	end
	return value;
end

local kinds = module:get_option_set("component_post_stanzas");
if not kinds then
	kinds = module:get_option_set("post_stanza_types");
	if kinds then
		module:log("warn", "Option post_stanza_types is deprecated, rename it to component_post_stanzas");
	end
end
kinds = kinds or set.new({ "message" });
local kind_list = {};
for kind in kinds do
	table.insert(kind_list, kind);
end

local headers = module:get_option("component_post_headers");
if headers ~= nil and type(headers) ~= "table" then
	load_error("component_post_headers must be a table of header names and values");
end

local tls_verify = module:get_option_boolean("component_post_tls_verify", defaults.tls_verify);
if tls_verify == false then
	module:log("warn", "component_post_tls_verify = false: the web service's certificate is not checked");
end

local options = {
	host = module.host;
	url = module:get_option_string("component_post_url");
	stanzas = kind_list;
	timeout = number_option("component_post_timeout", defaults.timeout);
	connect_timeout = number_option("component_post_connect_timeout", defaults.connect_timeout);
	max_inflight = number_option("component_post_max_inflight", defaults.max_inflight);
	queue_size = number_option("component_post_queue_size", defaults.queue_size);
	retries = number_option("component_post_retries", defaults.retries);
	ordering = module:get_option_string("component_post_ordering", defaults.ordering);
	secrets = module:get_option_array("component_post_secret");
	headers = headers;
	ca_file = module:get_option_path("component_post_ca_file", nil, "config");
	tls_verify = tls_verify;
	max_response = number_option("component_post_max_response", defaults.max_response);
};

-- new_client answers nil and a reason for a bad option; a Lua error (say, a
-- header value that is not a string) is a bad option too.
local ok, client, config_err = pcall(native.new_client, options);
if not ok then
	load_error("invalid option: %s", tostring(client):match("^[^\n]*"));
elseif not client then
	load_error("%s", config_err);
end

local function send(stanza)
	local ok, err = pcall(module.send, module, stanza);
	if not ok then
		module:log("error", "Could not send %s: %s", stanza:top_tag(), err);
	end
end

-- Sends what the native side produced: replies, stanza errors, log lines.
local function deliver(stanzas, logs)
	for i = 1, #logs, 2 do
		module:log(logs[i], "%s", logs[i + 1]);
	end
	for i = 1, #stanzas do
		send(stanzas[i]);
	end
end

local function drain()
	deliver(client:drain());
end

local function on_readable()
	-- An error escaping here would reach net.server and stall Prosody.
	local ok, err = xpcall(drain, debug.traceback);
	if not ok then
		module:log("error", "Delivering replies failed: %s", err);
	end
end

local watcher = server.watchfd(client:fd(), on_readable);

-- Errors and IQ results are never answered (loop guard).
local function answerable(stanza)
	local stanza_type = stanza.attr.type;
	return stanza_type ~= "error" and not (stanza.name == "iq" and stanza_type == "result");
end

local function forward(event)
	local stanza = event.stanza;
	local ok, err = pcall(client.post, client, stanza);
	if not ok then
		module:log("error", "Could not forward %s: %s", stanza:top_tag(), tostring(err));
		if answerable(stanza) then
			send(st.error_reply(stanza, "cancel", "internal-server-error", "could not forward the stanza"));
		end
	end
	return true;
end

local function answer_presence(event)
	local ok, answers = pcall(native.local_presence, event.stanza);
	if not ok then
		module:log("error", "Could not answer %s: %s", event.stanza:top_tag(), tostring(answers));
		return true;
	end
	for _, answer in ipairs(answers) do
		send(answer);
	end
	return true;
end

local function answer_iq(event)
	local ok, answer = pcall(native.local_iq, event.stanza, module.host);
	if not ok then
		module:log("error", "Could not answer %s: %s", event.stanza:top_tag(), tostring(answer));
		answer = answerable(event.stanza)
			and st.error_reply(event.stanza, "cancel", "internal-server-error");
	end
	if answer then
		send(answer);
	end
	return true;
end

-- What answers a kind of stanza that is not forwarded: Prosody itself for
-- messages (service-unavailable), this module for presence and IQs.
local local_handlers = { presence = answer_presence, iq = answer_iq };

-- Above mod_iq, which a component inherits and which would otherwise answer
-- IQs to the bare domain first.
local PRIORITY = 10;

for _, kind in ipairs({ "message", "presence", "iq" }) do
	local handler = client:forwards(kind) and forward or local_handlers[kind];
	if handler then
		for _, to in ipairs({ "host", "bare", "full" }) do
			module:hook(kind.."/"..to, handler, PRIORITY);
		end
	end
end

module:log("info", "Forwarding %s to the web service", tostring(kinds));

function module.unload()
	if watcher.close then
		watcher:close();
	else -- libevent's handle has no close()
		watcher:setflags(false, false);
	end
	-- Every stanza still in flight gets an error reply now.
	deliver(client:cancel_all());
end
