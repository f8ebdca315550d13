-- The push endpoint (docs/contract.md §10): the web service POSTs a stanza
-- to Prosody's HTTP server and the component sends it as its own. Only
-- loaded when component_push_token or component_push_public_key is set.
-- The native endpoint decides who may push and how often, and reads the
-- stanza; this serves HTTP and waits for the answers to pushed IQs.

local json = require "util.json";
local jid = require "util.jid";
local time_now = require "util.time".now;

-- `body`: a table to encode, or JSON text already made.
local function json_response(response, status, body)
	response.status_code = status;
	response.headers.content_type = "application/json";
	return type(body) == "string" and body or json.encode(body);
end

local push = {};

-- Pushed IQs handed over by a reload (see serve's save), answered 503: the
-- module after it failed to load, or has no push endpoint.
function push.refuse(waiting_iqs, why)
	for _, waiting in pairs(waiting_iqs) do
		waiting.response:send(json_response(waiting.response, 503, { error = why }));
	end
end

-- Serves /component_http on this host: `endpoint` (native.new_push) admits
-- and reads pushes, `send` sends a stanza as the component, `inherited`
-- are the pushed IQs a reload handed over (or nil). Returns { answer = (an
-- IQ result or error: true if it answered a pushed IQ, now sent back over
-- HTTP), cancel = (every pushed IQ still waiting gets 503 and `why`), save
-- = (a reload: the pushed IQs waiting, for the next module, no longer this
-- one's) }.
function push.serve(endpoint, native, send, inherited)
	local timeout = endpoint:timeout();
	-- IQs pushed and waiting for their answer: id -> { to, bare, response,
	-- expires, timer }.
	local pushed_iqs = {};

	-- Waits for the answer to pushed IQ `id` until `waiting.expires`.
	local function wait_for_answer(id, waiting)
		pushed_iqs[id] = waiting;
		waiting.timer = module:add_timer(math.max(0, waiting.expires - time_now()), function ()
			if pushed_iqs[id] == waiting then
				pushed_iqs[id] = nil;
				waiting.response:send(json_response(waiting.response, 504, { error = "no answer to the iq in time" }));
			end
		end);
	end
	for id, waiting in pairs(inherited or {}) do
		wait_for_answer(id, waiting);
	end

	-- An answer to a pushed IQ goes back to the HTTP request that sent it,
	-- if it comes from the JID the IQ went to (or, for an IQ to a bare JID,
	-- one of its resources): the id alone could be answered by anyone.
	local function answer_pushed_iq(stanza)
		local waiting = pushed_iqs[stanza.attr.id];
		if not waiting then
			return false;
		end
		local from = jid.prep(stanza.attr.from);
		if from ~= waiting.to and not (waiting.bare and jid.bare(from) == waiting.to) then
			module:log("warn", "Ignoring an answer to pushed iq %s from %s: it went to %s",
				stanza.attr.id, tostring(stanza.attr.from), waiting.to);
			return false;
		end
		pushed_iqs[stanza.attr.id] = nil;
		waiting.timer:stop();
		local ok, answer = pcall(native.request_json, stanza);
		waiting.response:send(json_response(waiting.response, ok and 200 or 502,
			ok and answer or { error = "the answer could not be read" }));
		return true;
	end

	local function handle_push(event)
		local request, response = event.request, event.response;
		local headers, body = request.headers, request.body or "";
		local status, why, retry_after = endpoint:admit(tostring(request.ip), headers.authorization,
			headers.webhook_id, headers.webhook_timestamp, headers.webhook_signature, body);
		if status then
			if status == 401 then
				response.headers.www_authenticate = "Bearer";
			end
			if retry_after then
				response.headers.retry_after = tostring(retry_after);
			end
			return json_response(response, status, { error = why });
		end
		local stanza;
		stanza, status, why = endpoint:stanza(headers.content_type, body);
		if not stanza then
			return json_response(response, status, { error = why });
		end
		local to = stanza.attr.to; -- prepared natively
		local id = stanza.attr.id;
		if stanza.name == "iq" and (stanza.attr.type == "get" or stanza.attr.type == "set") then
			if pushed_iqs[id] then
				return json_response(response, 409, { error = "an iq with this id is still waiting" });
			end
			wait_for_answer(id, {
				to = to;
				bare = not jid.resource(to);
				response = response;
				expires = time_now() + timeout;
			});
			send(stanza);
			return true; -- answered when the iq's answer arrives
		end
		send(stanza);
		return json_response(response, 202, { id = id });
	end

	module:depends("http");
	module:provides("http", {
		-- Server to server: no browser needs to reach it.
		cors = { enabled = false };
		route = { ["POST"] = handle_push };
	});

	local function cancel(why)
		for id, waiting in pairs(pushed_iqs) do
			pushed_iqs[id] = nil;
			waiting.timer:stop();
			waiting.response:send(json_response(waiting.response, 503, { error = why }));
		end
	end

	local function save()
		local waiting_iqs = pushed_iqs;
		pushed_iqs = {};
		for _, waiting in pairs(waiting_iqs) do
			waiting.timer:stop();
			waiting.timer = nil;
		end
		return waiting_iqs;
	end

	return { answer = answer_pushed_iq, cancel = cancel, save = save };
end

return push;
