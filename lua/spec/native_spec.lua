-- The Lua side of the native library, with Prosody's own util.stanza.
-- Run by `make test-lua` with busted, on every Lua the library is built for:
-- NATIVE_LIB names the library built for the running Lua, PROSODY_SOURCE the
-- Prosody whose util.stanza and util.json are used (Debian's 0.12 by default).

local native = dofile("lua/spec/prosody.lua");

-- Prosody's C helpers are built for Lua 5.4 only, and util.stanza needs one
-- of them (UTF-8 validation): on another Lua a plain-Lua check stands in.
if not pcall(require, "util.encodings") then
	local function valid(s)
		local i, n = 1, #s;
		while i <= n do
			local c = s:byte(i);
			local len = c < 0x80 and 1 or (c >= 0xC2 and c < 0xE0) and 2
				or (c >= 0xE0 and c < 0xF0) and 3 or (c >= 0xF0 and c < 0xF5) and 4;
			if not len then return false; end
			for j = i + 1, i + len - 1 do
				local b = s:byte(j);
				if not b or b < 0x80 or b > 0xBF then return false; end
			end
			i = i + len;
		end
		return true;
	end
	package.loaded["util.encodings"] = { utf8 = { valid = valid } };
end

local st = require "util.stanza";
local json = require "util.json";


local function message()
	return st.message({ to = "echo@bot.localhost", from = "user@localhost/res", type = "chat", id = "m1" })
		:text_tag("body", "a <b> & 'c'")
		:tag("x", { xmlns = "urn:test", ["urn:other\1attr"] = "v" }):text("t"):up();
end

describe("request_json", function ()
	it("carries the stanza serialised exactly as tostring() does", function ()
		local stanza = message();
		local request = json.decode(native.request_json(stanza));
		assert.are.equal(tostring(stanza), request.stanza);
		assert.are.same({ "echo@bot.localhost", "user@localhost/res", "message", "chat", "m1", "a <b> & 'c'" },
			{ request.to, request.from, request.kind, request.type, request.id, request.body });
	end);

	it("reads numbers as attribute values, skips what is neither text nor a tag", function ()
		local stanza = message();
		stanza.attr.id = 5;
		stanza.attr.type = nil;
		stanza.tags[1].attr.n = 1.5;
		table.insert(stanza, 1, true);
		local request = json.decode(native.request_json(stanza));
		assert.are.equal("5", request.id);
		assert.matches("<body n='1.5'>", request.stanza, 1, true);
		assert.matches("^<message[^>]*><body", request.stanza);
	end);

	it("refuses text that is not UTF-8, as a Lua error", function ()
		local stanza = message();
		stanza.tags[1][1] = "caf\233";
		assert.has_error(function () native.request_json(stanza) end);
		stanza = message();
		stanza.attr.id = "\255";
		assert.has_error(function () native.request_json(stanza) end);
	end);

	it("refuses what is not a stanza, as a Lua error", function ()
		assert.has_error(function () native.request_json({}) end);
		assert.has_error(function () native.request_json(st.stanza("foo", { to = "a", from = "b" })) end);
		assert.has_error(function () native.request_json(st.message({ to = "a" })) end);
	end);
end);

local unpack = table.unpack or unpack; -- luacheck: ignore 113

-- A flat effect list (see the main file) as { { name, values... }, ... }.
local function parsed(effects)
	local list = {};
	local i = 1;
	while effects and i <= #effects do
		local name = effects[i];
		local n = assert(native.effects[name], name);
		table.insert(list, { name, unpack(effects, i + 1, i + n) });
		i = i + 1 + n;
	end
	return list;
end

-- A host as the shim makes it: its delivery and its rooms.
local function host(stanzas)
	local delivery = assert(native.new_delivery({ host = "bot.localhost", url = "http://127.0.0.1:9/", stanzas = stanzas }));
	return delivery, native.new_rooms(delivery, nil);
end

describe("local answers", function ()
	it("are send effects with real util.stanza objects", function ()
		local delivery, rooms = host({ "message" });
		local effects, taken = native.receive(delivery, rooms, nil,
			st.presence({ to = "p@bot.localhost", from = "u@localhost/r", type = "subscribe" }));
		assert.is_true(taken);
		local answers = parsed(effects);
		assert.are.equal(2, #answers);
		for _, answer in ipairs(answers) do
			assert.are.equal("send", answer[1]);
			assert.is_true(st.is_stanza(answer[2]));
		end
		assert.are.same({ to = "u@localhost", from = "p@bot.localhost", type = "subscribed" }, answers[1][2].attr);
		local info = parsed((native.receive(delivery, rooms, nil, st.iq({ to = "bot.localhost", from = "u@localhost/r", type = "get", id = "d" })
			:query("http://jabber.org/protocol/disco#info"))))[1][2];
		assert.is_true(st.is_stanza(info));
		assert.are.equal("component", info:get_child("query", "http://jabber.org/protocol/disco#info")
			:get_child("identity").attr.category);
		assert.are.equal(3, #info.tags[1].tags);
	end);

	it("gives nothing for IQ results", function ()
		local delivery, rooms = host({ "message" });
		local effects, taken = native.receive(delivery, rooms, nil,
			st.iq({ to = "bot.localhost", from = "u@localhost/r", type = "result", id = "r" }));
		assert.is_nil(effects);
		assert.is_true(taken);
	end);

	it("leaves a message Prosody's when messages are not forwarded", function ()
		local delivery, rooms = host({ "iq" });
		local effects, taken = native.receive(delivery, rooms, nil, st.message({ to = "e@bot.localhost", from = "u@localhost/r" }));
		assert.is_nil(effects);
		assert.is_false(taken);
		-- ... but not one from a room, which would kick the bot for an error.
		effects, taken = native.receive(delivery, rooms, nil,
			st.message({ to = "e@bot.localhost", from = "room@muc.localhost/ann", type = "groupchat" }));
		assert.is_true(taken);
		assert.are.equal("debug", parsed(effects)[1][2]);
	end);
end);

describe("new_delivery", function ()
	it("returns nil and the reason for a bad option", function ()
		local delivery, err = native.new_delivery({ host = "bot.localhost", url = "ftp://x/", stanzas = { "message" } });
		assert.is_nil(delivery);
		assert.matches("component_post_url", err);
		delivery, err = native.new_delivery({ host = "bot.localhost", url = "http://x/", timeout = -1, stanzas = {} });
		assert.is_nil(delivery);
		assert.matches("component_post_timeout", err);
		-- Only the keys native.options declares.
		delivery, err = native.new_delivery({ host = "bot.localhost", url = "http://x/", time_out = 5 });
		assert.is_nil(delivery);
		assert.matches('no option has the key "time_out"', err, 1, true);
		local every = { host = "bot.localhost" };
		for _, option in ipairs(native.options) do
			every[option.key] = option.default;
		end
		every.url = "http://x/";
		assert.is_not_nil(native.new_delivery(every));
	end);

	it("gives an fd to watch, and nothing to drain before a stanza", function ()
		local delivery = assert(native.new_delivery({ host = "bot.localhost", url = "http://127.0.0.1:9/", stanzas = { "message", "iq" } }));
		assert.is_true(delivery:fd() > 2);
		assert.is_nil(delivery:drain());
	end);

	it("answers a stanza it cannot read with a stanza error, and never an error", function ()
		local delivery, rooms = host({ "message" });
		local deep = st.message({ to = "b@bot.localhost", from = "u@localhost/r", id = "deep" });
		for _ = 1, 70 do deep:tag("x"); end
		local effects = parsed((native.receive(delivery, rooms, nil, deep)));
		assert.are.equal(2, #effects);
		assert.are.same({ "log", "error" }, { effects[1][1], effects[1][2] });
		assert.matches("Could not forward <message .*nested too deeply", effects[1][3]);
		local reply = effects[2][2];
		assert.are.equal("send", effects[2][1]);
		assert.is_true(st.is_stanza(reply));
		assert.are.same({ to = "u@localhost/r", from = "b@bot.localhost", id = "deep", type = "error" }, reply.attr);
		assert.are.equal("internal-server-error", reply.tags[1].tags[1].name);
		deep.attr.type = "error";
		effects = parsed((native.receive(delivery, rooms, nil, deep)));
		assert.are.equal(1, #effects);
		assert.matches("nested too deeply", effects[1][3]);
	end);
end);

describe("new_rooms", function ()
	it("answers with effects, stanzas as util.stanza", function ()
		local delivery = assert(native.new_delivery({ host = "bot.localhost", url = "http://127.0.0.1:9/", stanzas = { "message" } }));
		local rooms = native.new_rooms(delivery, nil);
		local effects = parsed(rooms:add("room@muc.localhost", nil));
		assert.are.equal(2, #effects);
		assert.are.equal("send", effects[1][1]);
		local join = effects[1][2];
		assert.is_true(st.is_stanza(join));
		assert.are.same({ to = "room@muc.localhost/bot", from = "bot.localhost" }, join.attr);
		assert.are.equal("0", join:get_child("x", "http://jabber.org/protocol/muc"):get_child("history").attr.maxstanzas);
		assert.are.same({ "wake_rooms", false }, effects[2]);
		local own = st.presence({ from = "room@muc.localhost/bot", to = "bot.localhost" })
			:tag("x", { xmlns = "http://jabber.org/protocol/muc#user" }):tag("status", { code = "110" }):up():up();
		local handled, taken = native.receive(delivery, rooms, nil, own);
		assert.are.same({ { "log", "info", "Joined room room@muc.localhost as bot" }, { "wake_rooms", false } },
			parsed(handled));
		assert.is_true(taken);
		assert.are.same({ "room@muc.localhost/bot" }, rooms:joined());
		-- The delivery knows the room: no error goes to it or its occupants.
		local deep = st.message({ to = "b@bot.localhost", from = "room@muc.localhost/ann", type = "chat", id = "d" });
		for _ = 1, 70 do deep:tag("x"); end
		effects = parsed((native.receive(delivery, rooms, nil, deep)));
		assert.are.equal(2, #effects);
		assert.matches("nested too deeply.*no error sent to the room", effects[1][3]);
		assert.are.same({ "withheld" }, effects[2]);
	end);
end);
