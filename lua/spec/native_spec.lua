-- The Lua side of the native library, with Prosody's own util.stanza.
-- Run by `make test-lua` (busted, Lua 5.4).

package.path = "/usr/lib/prosody/?.lua;" .. package.path;
package.cpath = "/usr/lib/x86_64-linux-gnu/prosody/?.so;/usr/lib/prosody/?.so;" .. package.cpath;

local st = require "util.stanza";
local json = require "util.json";

local library = os.getenv("NATIVE_LIB") or "build/mod_component_http/component_http.so";
local native = assert(package.loadlib(library, "luaopen_component_http"))();

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

	it("refuses what is not a stanza, as a Lua error", function ()
		assert.has_error(function () native.request_json({}) end);
		assert.has_error(function () native.request_json(st.stanza("foo", { to = "a", from = "b" })) end);
		assert.has_error(function () native.request_json(st.message({ to = "a" })) end);
	end);
end);

describe("local answers", function ()
	it("are real util.stanza objects", function ()
		local answers = native.local_presence(st.presence({ to = "p@bot.localhost", from = "u@localhost/r", type = "subscribe" }));
		assert.are.equal(2, #answers);
		for _, answer in ipairs(answers) do
			assert.is_true(st.is_stanza(answer));
		end
		assert.are.same({ to = "u@localhost", from = "p@bot.localhost", type = "subscribed" }, answers[1].attr);
		local info = native.local_iq(st.iq({ to = "bot.localhost", from = "u@localhost/r", type = "get", id = "d" })
			:query("http://jabber.org/protocol/disco#info"), "bot.localhost");
		assert.is_true(st.is_stanza(info));
		assert.are.equal("component", info:get_child("query", "http://jabber.org/protocol/disco#info")
			:get_child("identity").attr.category);
		assert.are.equal(3, #info.tags[1].tags);
	end);

	it("gives nothing for IQ results", function ()
		assert.is_nil(native.local_iq(st.iq({ to = "bot.localhost", from = "u@localhost/r", type = "result", id = "r" }), "bot.localhost"));
	end);
end);

describe("new_client", function ()
	it("returns nil and the reason for a bad option", function ()
		local client, err = native.new_client({ host = "bot.localhost", url = "ftp://x/", stanzas = { "message" } });
		assert.is_nil(client);
		assert.matches("component_post_url", err);
		client, err = native.new_client({ host = "bot.localhost", url = "http://x/", timeout = -1, stanzas = {} });
		assert.is_nil(client);
		assert.matches("component_post_timeout", err);
	end);

	it("gives an fd to watch and knows what it forwards", function ()
		local client = assert(native.new_client({ host = "bot.localhost", url = "http://127.0.0.1:9/", stanzas = { "message", "iq" } }));
		assert.is_true(client:fd() > 2);
		assert.is_true(client:forwards("iq"));
		assert.is_false(client:forwards("presence"));
		local stanzas, logs, reports = client:drain();
		assert.are.same({}, stanzas);
		assert.is_nil(logs);
		assert.are.same({}, reports);
	end);
end);
