-- mod_component_http: every stanza sent to this component is POSTed as JSON
-- to a web service, and the JSON answer becomes the reply.
--
-- This file is Prosody wiring only: options, hooks, the watched descriptor.
-- Conversion, HTTP and the reply rules live in the native library beside it
-- (component_http.so, built from the Rust crate of this project).

local st = require "util.stanza";
local set = require "util.set";
local json = require "util.json";
local jid_prep = require "util.jid".prep;
local throttle = require "util.throttle";
local server = require "net.server";

local NATIVE_NAME = "component_http";
-- Stamped by `make` from Cargo.toml: the native library this shim expects.
local VERSION = "@VERSION@";

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
if native.version ~= VERSION and VERSION ~= "@".."VERSION@" then
	-- A reload loads a new shim, but the library already in the process
	-- stays: only a restart loads a new one.
	module:log("warn", "This module is version %s but the native library loaded in Prosody is %s:"
		.." restart Prosody to load the new library", VERSION, native.version);
end

local defaults = native.defaults;

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
	timeout = duration_option("component_post_timeout", defaults.timeout);
	connect_timeout = duration_option("component_post_connect_timeout", defaults.connect_timeout);
	max_inflight = number_option("component_post_max_inflight", defaults.max_inflight);
	queue_size = number_option("component_post_queue_size", defaults.queue_size);
	retries = number_option("component_post_retries", defaults.retries);
	ordering = module:get_option_string("component_post_ordering", defaults.ordering);
	secrets = module:get_option_array("component_post_secret");
	headers = headers;
	ca_file = module:get_option_path("component_post_ca_file", nil, "config");
	tls_verify = tls_verify;
	max_response = number_option("component_post_max_response", defaults.max_response);
	push_token = module:get_option_string("component_push_token");
	push_max_size = number_option("component_push_max_size", defaults.push_max_size);
	durable = module:get_option_boolean("component_post_durable", defaults.durable);
	max_age = duration_option("component_post_max_age", defaults.max_age);
	durable_limit = number_option("component_post_durable_limit", defaults.durable_limit);
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
local dead_gauge = module:metric("gauge", "dead_letters", "",
	"Durable delivery: stanzas given up after component_post_max_age, kept in storage", {}):with_labels();

-- The module's status follows the web service: error while it cannot be
-- reached, back to normal once it answers again.
local UNREACHABLE = { timeout = true, unreachable = true };
local reachable = true;

local function record(reports)
	for i = 1, #reports, 3 do
		local outcome, seconds, extra_attempts = reports[i], reports[i + 1], reports[i + 2];
		requests_by_outcome[outcome]:add(1);
		if seconds >= 0 then
			duration:sample(seconds);
		end
		if extra_attempts > 0 then
			retries:add(extra_attempts);
		end
		if UNREACHABLE[outcome] and reachable then
			reachable = false;
			module:set_status("error", "web service unreachable ("..outcome..")");
		elseif outcome:match("^%dxx$") and not reachable then
			reachable = true;
			module:set_status("info", "web service answering again", true);
		end
	end
end

-- What the admin shell's component_http:status() shows of this host.
local shell_state = { client = client };

-- Durable delivery ------------------------------------------------------------
-- Stanzas the web service could not take are kept in Prosody's storage (as
-- the admin configured it), keyed by delivery id, until delivered or given
-- up; given-up ones stay in a dead-letter store. The native side decides;
-- this writes what it says.
local waiting_store, dead_store;
local dead_count = 0;

local function store_set(store, id, value)
	local ok, done, err = pcall(store.set, store, id, value);
	if not (ok and done) then
		module:log("error", "Storage of held stanza %s failed: %s", id, tostring(ok and err or done));
	end
end

local function apply_storage(ops)
	for i = 1, #ops do
		local op = ops[i];
		if op.op == "hold" then
			store_set(waiting_store, op.id, { stanza = op.stanza, received = op.received });
		elseif op.op == "forget" then
			store_set(waiting_store, op.id, nil);
		elseif op.op == "dead" then
			store_set(dead_store, op.id, { stanza = op.stanza, received = op.received,
				died = os.time(), reason = op.reason });
			store_set(waiting_store, op.id, nil);
			dead_count = dead_count + 1;
		end
	end
end

-- Every record of a store, as { id=, stanza=, received=, ... }, oldest first.
local function stored(store)
	local records = {};
	local ok, err = pcall(function ()
		for id in store:users() do
			local data = store:get(id);
			if type(data) == "table" and data.stanza then
				data.id = id;
				table.insert(records, data);
			end
		end
	end);
	if not ok then
		module:log("error", "Reading held stanzas from storage failed: %s", tostring(err));
	end
	table.sort(records, function (a, b) return (a.received or 0) < (b.received or 0); end);
	return records;
end

-- How many records a store has, without reading them.
local function count_records(store)
	local n = 0;
	local ok, err = pcall(function ()
		for _ in store:users() do
			n = n + 1;
		end
	end);
	if not ok then
		module:log("error", "Counting held stanzas in storage failed: %s", tostring(err));
	end
	return n;
end

local circuit_open = false;

-- The module's status while the circuit is open says so.
local function follow_circuit()
	local _, open = client:held_counts();
	if open ~= circuit_open then
		circuit_open = open;
		if open then
			module:set_status("warn", "web service failing: holding stanzas (circuit open)");
		else
			module:set_status("info", "web service answering again", true);
		end
	end
end

-- Sends what the native side produced: replies, stanza errors, log lines,
-- metrics.
local function deliver(stanzas, logs, reports, storage)
	if storage then
		apply_storage(storage);
	end
	for i = 1, logs and #logs or 0, 2 do
		local level, message = logs[i], logs[i + 1];
		module:log(level, "%s", message);
		if level == "warn" or level == "error" then
			shell_state.last_error = os.date("!%Y-%m-%d %H:%M:%SZ ")..message;
		end
	end
	for i = 1, #stanzas do
		send(stanzas[i]);
	end
	record(reports);
	if waiting_store then
		follow_circuit();
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

module:hook_global("stats-update", function ()
	local running, waiting = client:counts();
	in_flight:set(running);
	queued:set(waiting);
	if waiting_store then
		held_gauge:set((client:held_counts()));
		dead_gauge:set(dead_count);
	end
end);

if options.durable then
	waiting_store = module:open_store("component_http_waiting");
	dead_store = module:open_store("component_http_dead");
	local records = stored(waiting_store);
	dead_count = count_records(dead_store);
	client:restore(records, false);
	if #records > 0 then
		module:log("info", "Delivering %d stanzas held from before", #records);
	end
else
	-- Held while durable delivery was on: kept, not delivered, and said.
	local held = count_records(module:open_store("component_http_waiting"));
	if held > 0 then
		module:log("warn", "%d stanzas held by component_post_durable wait in storage:"
			.." set it to true again to deliver them", held);
	end
end

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

-- The push endpoint ---------------------------------------------------------
-- The web service POSTs a stanza; the component sends it as its own. Off
-- unless component_push_token is set.

-- IQs pushed and waiting for their answer: id -> { response, timer }.
local pushed_iqs = {};

-- `body`: a table to encode, or JSON text already made.
local function json_response(response, status, body)
	response.status_code = status;
	response.headers.content_type = "application/json";
	return type(body) == "string" and body or json.encode(body);
end

-- An answer to a pushed IQ goes back to the HTTP request that sent it.
local function answer_pushed_iq(stanza)
	local waiting = pushed_iqs[stanza.attr.id];
	if not waiting then
		return false;
	end
	pushed_iqs[stanza.attr.id] = nil;
	waiting.timer:stop();
	local ok, answer = pcall(native.request_json, stanza);
	waiting.response:send(json_response(waiting.response, ok and 200 or 502,
		ok and answer or { error = "the answer could not be read" }));
	return true;
end

local function handle_push(event, push_throttle, push_timeout)
	local request, response = event.request, event.response;
	local headers, body = request.headers, request.body or "";
	local status, why = client:push_authorize(headers.authorization, headers.webhook_id,
		headers.webhook_timestamp, headers.webhook_signature, body);
	if status then
		if status == 401 then
			response.headers.www_authenticate = "Bearer";
		end
		return json_response(response, status, { error = why });
	end
	if not push_throttle:poll(1) then
		response.headers.retry_after = "1";
		return json_response(response, 429, { error = "too many pushes, slow down" });
	end
	local stanza;
	stanza, status, why = client:push_stanza(headers.content_type, body);
	if not stanza then
		return json_response(response, status, { error = why });
	end
	local to = jid_prep(stanza.attr.to);
	if not to then
		return json_response(response, 400, { error = "invalid JID in 'to'" });
	end
	stanza.attr.to = to;
	local id = stanza.attr.id;
	if stanza.name == "iq" and (stanza.attr.type == "get" or stanza.attr.type == "set") then
		if pushed_iqs[id] then
			return json_response(response, 409, { error = "an iq with this id is still waiting" });
		end
		pushed_iqs[id] = {
			response = response;
			timer = module:add_timer(push_timeout, function ()
				if pushed_iqs[id] and pushed_iqs[id].response == response then
					pushed_iqs[id] = nil;
					response:send(json_response(response, 504, { error = "no answer to the iq in time" }));
				end
			end);
		};
		send(stanza);
		return true; -- answered when the iq's answer arrives
	end
	send(stanza);
	return json_response(response, 202, { id = id });
end

if options.push_token then
	local push_throttle = throttle.create(number_option("component_push_rate", defaults.push_rate), 1);
	local push_timeout = duration_option("component_push_timeout", defaults.push_timeout);
	module:depends("http");
	module:provides("http", {
		-- Server to server: no browser needs to reach it.
		cors = { enabled = false };
		route = {
			["POST"] = function (event)
				return handle_push(event, push_throttle, push_timeout);
			end;
		};
	});
end

-- IQ answers to pushed IQs are the push endpoint's; the rest go on.
local function with_pushed_iqs(handler)
	return function (event)
		local stanza_type = event.stanza.attr.type;
		if (stanza_type == "result" or stanza_type == "error") and answer_pushed_iq(event.stanza) then
			return true;
		end
		return handler(event);
	end
end

-- What answers a kind of stanza that is not forwarded: Prosody itself for
-- messages (service-unavailable), this module for presence and IQs.
local local_handlers = { presence = answer_presence, iq = answer_iq };

-- Above mod_iq, which a component inherits and which would otherwise answer
-- IQs to the bare domain first.
local PRIORITY = 10;

for _, kind in ipairs({ "message", "presence", "iq" }) do
	local handler = client:forwards(kind) and forward or local_handlers[kind];
	if handler and kind == "iq" and options.push_token then
		handler = with_pushed_iqs(handler);
	end
	if handler then
		for _, to in ipairs({ "host", "bare", "full" }) do
			module:hook(kind.."/"..to, handler, PRIORITY);
		end
	end
end

-- Durable delivery, for the admin shell: list, replay, retry and purge held
-- stanzas and dead letters.
local function brief(record)
	local stanza = record.stanza:gsub("%s+", " ");
	if #stanza > 120 then
		stanza = stanza:sub(1, 117).."...";
	end
	return ("%s  %s  %s"):format(record.id, os.date("!%Y-%m-%dT%H:%M:%SZ",
		math.floor((record.received or 0) / 1000)), stanza);
end

local durable_admin = {};

function durable_admin.list(print)
	local records, open = client:held();
	print(("waiting: %d%s"):format(#records, open and " (circuit open)" or ""));
	for _, record in ipairs(records) do
		print("  "..brief(record));
	end
	local dead = stored(dead_store);
	print(("dead letters: %d"):format(#dead));
	for _, record in ipairs(dead) do
		print("  "..brief(record).."  ("..tostring(record.reason)..")");
	end
	return #records + #dead;
end

-- Dead letters back to the waiting list, as if they arrived now.
function durable_admin.replay(id)
	local replayed = {};
	for _, record in ipairs(stored(dead_store)) do
		if id == nil or record.id == id then
			table.insert(replayed, { id = record.id, stanza = record.stanza, received = record.received });
			store_set(dead_store, record.id, nil);
			dead_count = dead_count - 1;
		end
	end
	client:restore(replayed, true);
	return #replayed;
end

function durable_admin.purge(which, id)
	if which == "waiting" then
		return client:purge(id); -- senders get an error through the fd
	end
	local purged = 0;
	for _, record in ipairs(stored(dead_store)) do
		if id == nil or record.id == id then
			store_set(dead_store, record.id, nil);
			dead_count = dead_count - 1;
			purged = purged + 1;
		end
	end
	return purged;
end

function durable_admin.retry()
	client:retry_held();
	local count = client:held_counts();
	return count;
end

if options.durable then
	shell_state.durable = durable_admin;
end

-- Admin shell: the component_http section. Every command names the
-- component host first; `status` without one (Prosody 0.12 only) lists them all.
local shell_hosts = module:shared("/*/component_http/hosts");
shell_hosts[module.host] = shell_state;

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
					local running, waiting = state.client:counts();
					local held = state.durable and (", %d held"):format((state.client:held_counts())) or "";
					print(("%s: %d in flight, %d queued%s; last error: %s"):format(name, running, waiting, held,
						state.last_error or "none"));
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

-- Prosody 13 takes shell commands as items, with help and the argument form
-- (`prosodyctl shell component_http status HOST`), routed to the host named;
-- 0.12 reads them from the shell's shared environment.
local have_features, features = pcall(require, "core.features");
if have_features and features.available:contains("loader") then
	-- A component inherits few modules: the shell's host part, which takes
	-- this host's commands, is loaded here when the admin enabled the shell.
	local enabled = require "core.configmanager".get("*", "modules_enabled");
	if set.new(type(enabled) == "table" and enabled or {}):contains("admin_shell") then
		module:depends("admin_shell");
	end
	for _, command in ipairs(shell_commands) do
		module:add_item("shell-command", {
			section = "component_http";
			section_desc = "Deliveries of mod_component_http, and durable delivery's held stanzas";
			name = command.name;
			desc = command.desc;
			args = command.args;
			host_selector = "host";
			handler = command.handler;
		});
	end
else
	local shell_env = module:shared("/*/admin_shell/env");
	shell_env.component_http = shell_env.component_http or {};
	for _, command in ipairs(shell_commands) do
		shell_env.component_http[command.name] = command.handler;
	end
end

module:log("info", "Forwarding %s to the web service%s", tostring(kinds),
	options.durable and ", holding what it cannot take (durable)" or "");

-- Every stanza still in flight gets an error reply now (or is held in
-- storage, with durable delivery), and every pushed IQ still waiting an HTTP
-- answer gets one.
local stopped = false;
local function stop(shutting_down)
	if stopped then return; end
	stopped = true;
	local why = shutting_down and "the server is shutting down" or "the module was unloaded";
	deliver(client:cancel_all(shutting_down));
	for id, waiting in pairs(pushed_iqs) do
		pushed_iqs[id] = nil;
		waiting.timer:stop();
		waiting.response:send(json_response(waiting.response, 503, { error = why }));
	end
end

-- Prosody does not unload modules when it stops.
module:hook_global("server-stopping", function ()
	stop(true);
end);

function module.unload()
	if shell_hosts[module.host] == shell_state then
		shell_hosts[module.host] = nil;
	end
	if watcher.close then
		watcher:close();
	else -- libevent's handle has no close()
		watcher:setflags(false, false);
	end
	stop(false);
end
