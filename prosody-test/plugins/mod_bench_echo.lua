-- The benchmark's ceiling: a trivial in-process echo component, no HTTP at
-- all. It answers like the web service of `make bench` does, so the two
-- differ only in how the answer is produced.
local st = require "util.stanza";

local function echo(event)
	local stanza = event.stanza;
	if stanza.attr.type ~= "error" then
		module:send(st.reply(stanza):text_tag("body", "pong"));
	end
	return true;
end

for _, to in ipairs({ "host", "bare", "full" }) do
	module:hook("message/"..to, echo);
end
