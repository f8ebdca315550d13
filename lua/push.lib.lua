-- The push endpoint (docs/contract.md §10): the web service POSTs a stanza
-- to Prosody's HTTP server and the component sends it as its own. Only
-- loaded when component_push_token or component_push_public_key is set.
-- The native endpoint decides who may push and how often, and reads the
-- stanza; this serves HTTP and waits for the answers to pushed IQs.

local json = require "util.json";
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
-- and reads pushes and says which wait for an answer (an IQ get or set), and
-- whose answer is one (native.receive then gives it as a push_answer
-- effect); `call` calls a native method and applies its effects (see the
-- main file), which send what is pushed; `inherited` are the
-- pushed IQs a reload handed over (or nil). Returns { respond = (the
-- push_answer effect: id, status, JSON body), cancel = (every pushed IQ still
-- waiting gets 503 and `why`), save = (a reload: the pushed IQs waiting, for
-- the next module, no longer this one's) }.
function push.serve(endpoint, call, inherited)
	local timeout = endpoint:timeout();
	-- IQs pushed and waiting for their answer: id -> { to, response,
	-- expires, timer }. Who may answer is the native side's to check.
	local pushed_iqs = {};

	-- Waits for the answer to pushed IQ `id` until `waiting.expires`.
	local function wait_for_answer(id, waiting)
		pushed_iqs[id] = waiting;
		waiting.timer = module:add_timer(math.max(0, waiting.expires - time_now()), function ()
			if pushed_iqs[id] == waiting then
				pushed_iqs[id] = nil;
				endpoint:forget(id);
				waiting.response:send(json_response(waiting.response, 504, { error = "no answer to the iq in time" }));
			end
		end);
	end
	for id, waiting in pairs(inherited or {}) do
		if endpoint:expect(id, waiting.to) then
			wait_for_answer(id, waiting);
		else
			waiting.response:send(json_response(waiting.response, 409, { error = "an iq with this id is still waiting" }));
		end
	end

	local function respond(id, status, body)
		local waiting = pushed_iqs[id];
		if waiting then
			pushed_iqs[id] = nil;
			waiting.timer:stop();
			waiting.response:send(json_response(waiting.response, status, body));
		end
	end

	local function handle_push(event)
		local request, response = event.request, event.response;
		local headers, body = request.headers, request.body or "";
		local status, why, retry_after = endpoint:admit(tostring(request.ip), headers.authorization,
			headers.webhook_id, headers.webhook_timestamp, headers.webhook_signature, headers.content_type, body);
		if status then
			if status == 401 then
				response.headers.www_authenticate = "Bearer";
			end
			if retry_after then
				response.headers.retry_after = tostring(retry_after);
			end
			return json_response(response, status, { error = why });
		end
		-- Its answer is awaited before the IQ goes: a local service may
		-- answer while it is being sent.
		local function take(content_type, pushed)
			local effects, answer = endpoint:push(content_type, pushed);
			if answer.waits then
				-- An IQ waits component_push_timeout; a file (a number of
				-- seconds) its upload.
				local wait = type(answer.waits) == "number" and answer.waits or timeout;
				wait_for_answer(answer.id, { to = answer.to or "", response = response, expires = time_now() + wait });
			end
			return effects, answer;
		end
		-- What the push sends is sent (through the rooms: it may join or
		-- leave one); the answer says what it was, or why it was refused.
		local answer = call("push", nil, take, headers.content_type, body);
		if not answer then
			return json_response(response, 500, { error = "the push could not be handled" });
		elseif answer.status then
			return json_response(response, answer.status, { error = answer.error });
		elseif answer.waits then
			return true; -- answered when the iq's answer (or the upload) arrives
		elseif answer.commands then -- the menu, replaced
			return json_response(response, 200, { commands = answer.commands });
		end
		return json_response(response, 202, { id = answer.id });
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

	return { respond = respond, cancel = cancel, save = save };
end

return push;
