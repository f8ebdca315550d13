-- The JIDs this module lets out (replies, pushes) against an oracle it did
-- not write: Prosody's own util.jid.prep, with its stringprep (libidn on
-- Debian's 0.12). Thousands of JIDs are made from pieces that have broken
-- JID code before (several '@', empty parts, case, bidi overrides,
-- characters the profiles map to nothing or prohibit), by a seeded
-- generator, so a failure can be replayed.

local native = dofile("lua/spec/prosody.lua");

-- Only with Prosody's real stringprep (its C helpers are built for 5.4).
local has_stringprep, jid = pcall(function ()
	local encodings = require "util.encodings";
	assert(encodings.stringprep and encodings.stringprep.nodeprep);
	return require "util.jid";
end);

local PIECES = {
	"a", "b", "Alice", "BOT", "x1", "localhost", "example.com", "bot.localhost", "muc.example",
	"@", "@", "/", "/", ".", " ", "-", "_", "\"", "'", "&", ":", "<", ">",
	"ß", "Ä", "İ", "ﬁ", "Ａ", "Ω", "é", "e\204\129", -- e + combining acute
	"＠", "／", "🅀", -- fullwidth '@' and '/'; U+1F140, unassigned in Unicode 3.2
	"\226\128\174", -- U+202E RIGHT-TO-LEFT OVERRIDE
	"\226\128\139", -- U+200B ZERO WIDTH SPACE (mapped to nothing)
	"\194\173", -- U+00AD SOFT HYPHEN (mapped to nothing)
	"\194\160", -- U+00A0 NO-BREAK SPACE
	"\7", "\127", "\t",
	"\216\167", "\215\144", -- Arabic alef, Hebrew alef (bidi RandAL)
	"\240\159\152\128", -- an emoji
	"\239\191\191", -- U+FFFF, a noncharacter
};

local function make(random)
	local parts = {};
	for i = 1, random(1, 8) do
		parts[i] = PIECES[random(#PIECES)];
	end
	return table.concat(parts);
end

describe("jid_prep", function ()
	it("prepares a JID as Prosody does", function ()
		assert.are.equal("alice@example.com/Phone", native.jid_prep("Alice@Example.COM/Phone"));
		assert.is_nil(native.jid_prep("victim@localhost@bot.localhost"));
		assert.is_nil(native.jid_prep("@bot.localhost"));
	end);

	local oracle = has_stringprep and it or pending;
	oracle("agrees with util.jid.prep on 20,000 generated JIDs", function ()
		local seed = tonumber(os.getenv("JID_SEED")) or os.time();
		math.randomseed(seed);
		local random = math.random;
		local checked, differ = 0, {};
		for _ = 1, 20000 do
			local given = make(random);
			local ours, theirs = native.jid_prep(given), jid.prep(given);
			-- Where Prosody's answer, read again, is not the JID it prepared
			-- (a part mapped to nothing; a fullwidth '@' or '/' mapped to the
			-- ASCII one, which then splits elsewhere), this module refuses it.
			local unstable = false;
			if theirs then
				local n1, h1, r1 = jid.prepped_split(given);
				local n2, h2, r2 = jid.prepped_split(theirs);
				unstable = n1 ~= n2 or h1 ~= h2 or r1 ~= r2 or h1 == "";
			end
			if ours ~= theirs and not (ours == nil and unstable) then
				table.insert(differ, ("%q: ours %s, Prosody's %s"):format(given, tostring(ours), tostring(theirs)));
			end
			checked = checked + 1;
		end
		assert.are.same({}, { unpack and unpack(differ, 1, 10) or table.unpack(differ, 1, 10) },
			("JID_SEED=%d: %d of %d differ"):format(seed, #differ, checked));
	end);
end);
