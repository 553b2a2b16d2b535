-- Wireshark dissector for Pairguard failover-line frames (EtherType 0x88B5).
--
-- Install: copy this file into Wireshark's personal Lua plugin folder
-- (Help > About Wireshark > Folders > Personal Lua Plugins, usually
-- ~/.local/lib/wireshark/plugins/), or load it for one run:
--
--   tshark -X lua_script:pairguard.lua -r capture.pcap -V
--
-- Display filter fields are named pairguard.<field>: pairguard.type,
-- pairguard.role, pairguard.epoch, pairguard.seq, pairguard.boot,
-- pairguard.node, pairguard.pair, pairguard.generation, pairguard.version,
-- pairguard.flags (and one boolean per flag, pairguard.flags.preferred ...);
-- settings frames (type 4, a part of the sender's pair-level settings):
-- pairguard.settings.digest, .total, .index, .count, .part.
--
-- Preference "pairguard.key": the pair key (the config's pair-key, as
-- written, or "hex:" followed by the key in hexadecimal). When set, the
-- dissector checks each frame's authenticator (HMAC-SHA256 truncated to 16
-- bytes) and sets pairguard.auth.good; a wrong key, a forged or a corrupted
-- frame shows as an expert warning. Wireshark's Lua API has no HMAC, so
-- SHA-256 is computed below in plain Lua (bit32): fine for a capture,
-- slow for millions of frames.
--
-- The frame layout is documented in firmware/frame/frame.go; this file
-- follows it and decodes protocol versions 1 (100 bytes) and 2 (116 bytes,
-- with nonce and echo). The first bytes (magic "PG", version, type, length,
-- and since version 2 flags and pair id) and the trailing 16-byte
-- authenticator keep their meaning in every protocol version, so a frame of
-- a version this file does not know is still shown with its prefix, length
-- and authenticator.

local pg = Proto("pairguard", "Pairguard failover-line frame")

local AUTH_LEN = 16
local PREFIX_LEN = 6

local type_names = { [1] = "heartbeat", [2] = "release", [3] = "pair-hello", [4] = "settings" }
local TYPE_SETTINGS = 4
local SETTINGS_PART = 44
-- Names of the role engine's enums (firmware/engine/types.go).
local mode_names = { [1] = "independent", [2] = "main", [3] = "spare" }
local role_names = { [1] = "starting", [2] = "primary", [3] = "secondary", [4] = "fault", [5] = "standalone" }
local data_names = { [1] = "up-to-date", [2] = "outdated", [3] = "inconsistent" }
local mirror_names = { [1] = "off", [2] = "connecting", [3] = "syncing", [4] = "in-sync", [5] = "behind", [6] = "split-brain" }

local F = {
	magic = ProtoField.string("pairguard.magic", "Magic"),
	version = ProtoField.uint8("pairguard.version", "Protocol version", base.DEC),
	type = ProtoField.uint8("pairguard.type", "Type", base.DEC, type_names),
	length = ProtoField.uint16("pairguard.length", "Length", base.DEC),
	flags = ProtoField.uint16("pairguard.flags", "Flags", base.HEX),
	preferred = ProtoField.bool("pairguard.flags.preferred", "Preferred main", 16, nil, 0x0001),
	handover = ProtoField.bool("pairguard.flags.handover", "Handover", 16, nil, 0x0002),
	lan1 = ProtoField.bool("pairguard.flags.lan1", "Sent on LAN 1", 16, nil, 0x0004),
	forced = ProtoField.bool("pairguard.flags.forced", "Role forced", 16, nil, 0x0008),
	eligible = ProtoField.bool("pairguard.flags.eligible", "Eligible", 16, nil, 0x0010),
	pair = ProtoField.uint32("pairguard.pair", "Pair id", base.HEX),
	node = ProtoField.uint64("pairguard.node", "Node id", base.HEX),
	mode = ProtoField.uint8("pairguard.mode", "Mode", base.DEC, mode_names),
	role = ProtoField.uint8("pairguard.role", "Role", base.DEC, role_names),
	data = ProtoField.uint8("pairguard.data", "Data state", base.DEC, data_names),
	mirror = ProtoField.uint8("pairguard.mirror", "Mirror state", base.DEC, mirror_names),
	percent = ProtoField.uint8("pairguard.mirror.percent", "Mirror percent", base.DEC),
	softlen = ProtoField.uint8("pairguard.software.length", "Software version length", base.DEC),
	reserved = ProtoField.bytes("pairguard.reserved", "Reserved"),
	epoch = ProtoField.uint64("pairguard.epoch", "Epoch", base.DEC),
	boot = ProtoField.uint64("pairguard.boot", "Boot id", base.DEC),
	seq = ProtoField.uint64("pairguard.seq", "Sequence", base.DEC),
	generation = ProtoField.uint64("pairguard.generation", "Data generation", base.HEX),
	history = ProtoField.uint64("pairguard.history", "Previous generation", base.HEX),
	nonce = ProtoField.uint64("pairguard.nonce", "Nonce (the sender's, new at each start)", base.HEX),
	echo = ProtoField.uint64("pairguard.echo", "Echo (the nonce last heard from the peer)", base.HEX),
	software = ProtoField.string("pairguard.software", "Software version"),
	body = ProtoField.bytes("pairguard.body", "Body (unknown version)"),
	digest = ProtoField.bytes("pairguard.settings.digest", "Settings digest (SHA-256, first 16 bytes)"),
	total = ProtoField.uint16("pairguard.settings.total", "Settings length", base.DEC),
	index = ProtoField.uint8("pairguard.settings.index", "Part index", base.DEC),
	count = ProtoField.uint8("pairguard.settings.count", "Part count", base.DEC),
	part = ProtoField.bytes("pairguard.settings.part", "Settings part"),
	auth = ProtoField.bytes("pairguard.auth", "Authenticator"),
	auth_good = ProtoField.bool("pairguard.auth.good", "Authenticator verified"),
	padding = ProtoField.bytes("pairguard.padding", "Padding"),
}
pg.fields = F

local E = {
	length = ProtoExpert.new("pairguard.length.wrong", "Wrong frame length", expert.group.MALFORMED, expert.severity.ERROR),
	version = ProtoExpert.new("pairguard.version.unknown", "Protocol version unknown to this dissector", expert.group.PROTOCOL, expert.severity.WARN),
	auth = ProtoExpert.new("pairguard.auth.bad", "Authenticator does not match the pair key", expert.group.SECURITY, expert.severity.WARN),
	malformed = ProtoExpert.new("pairguard.malformed", "Malformed field", expert.group.MALFORMED, expert.severity.ERROR),
}
pg.experts = { E.length, E.version, E.auth, E.malformed }

pg.prefs.key = Pref.string("Pair key", "",
	"The pair key (pair-key of the config, or hex:<hex digits>) used to verify authenticators; empty: not checked")

-- Layouts per protocol version: the frame's length and its fields after the
-- six-byte prefix, as {offset, size, field}. Version 2 added the nonce and
-- its echo (freshness after a restart) before the software version.
local common = {
	{ 6, 2, "flags" }, { 8, 4, "pair" }, { 12, 8, "node" },
	{ 20, 1, "mode" }, { 21, 1, "role" }, { 22, 1, "data" }, { 23, 1, "mirror" },
	{ 24, 1, "percent" }, { 25, 1, "softlen" }, { 26, 2, "reserved" },
	{ 28, 8, "epoch" }, { 36, 8, "boot" }, { 44, 8, "seq" },
	{ 52, 8, "generation" }, { 60, 8, "history" },
}
local function layout(len, extra)
	local fields = {}
	for _, f in ipairs(common) do fields[#fields + 1] = f end
	for _, f in ipairs(extra) do fields[#fields + 1] = f end
	return { len = len, fields = fields }
end
local layouts = {
	[1] = layout(100, { { 68, 16, "software" } }),
	[2] = layout(116, { { 68, 8, "nonce" }, { 76, 8, "echo" }, { 84, 16, "software" } }),
}
-- Settings frames (version 2, type 4) have the heartbeat's length, prefix
-- and authenticator and a body of their own (firmware/frame/settingsframe.go).
local settings_layout = { len = 116, fields = {
	{ 6, 2, "flags" }, { 8, 4, "pair" }, { 12, 8, "node" }, { 20, 8, "boot" }, { 28, 8, "seq" },
	{ 36, 16, "digest" }, { 52, 2, "total" }, { 54, 1, "index" }, { 55, 1, "count" }, { 56, 44, "part" },
} }
-- Since version 2 the first 12 bytes (prefix, flags, pair id) are the same in
-- every version; an unknown version longer than this is shown with them.
local FIXED_LEN = 12

-- SHA-256 and HMAC-SHA256 over Lua strings (FIPS 180-4, RFC 2104).
local band, bnot, bxor, rrotate, rshift = bit32.band, bit32.bnot, bit32.bxor, bit32.rrotate, bit32.rshift
local K256 = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
local M32 = 4294967296

local function sha256(msg)
	local h = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 }
	local bits = #msg * 8
	local tail = {}
	for i = 8, 1, -1 do
		tail[i] = string.char(bits % 256)
		bits = math.floor(bits / 256)
	end
	msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64) .. table.concat(tail)
	local w = {}
	for chunk = 1, #msg, 64 do
		for i = 0, 15 do
			local a, b, c, d = msg:byte(chunk + 4 * i, chunk + 4 * i + 3)
			w[i + 1] = ((a * 256 + b) * 256 + c) * 256 + d
		end
		for i = 17, 64 do
			local x, y = w[i - 15], w[i - 2]
			local s0 = bxor(rrotate(x, 7), rrotate(x, 18), rshift(x, 3))
			local s1 = bxor(rrotate(y, 17), rrotate(y, 19), rshift(y, 10))
			w[i] = (w[i - 16] + s0 + w[i - 7] + s1) % M32
		end
		local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
		for i = 1, 64 do
			local S1 = bxor(rrotate(e, 6), rrotate(e, 11), rrotate(e, 25))
			local ch = bxor(band(e, f), band(bnot(e), g))
			local t1 = hh + S1 + ch + K256[i] + w[i]
			local S0 = bxor(rrotate(a, 2), rrotate(a, 13), rrotate(a, 22))
			local maj = bxor(band(a, b), band(a, c), band(b, c))
			hh, g, f, e, d, c, b, a = g, f, e, (d + t1) % M32, c, b, a, (t1 + S0 + maj) % M32
		end
		h[1], h[2], h[3], h[4] = (h[1] + a) % M32, (h[2] + b) % M32, (h[3] + c) % M32, (h[4] + d) % M32
		h[5], h[6], h[7], h[8] = (h[5] + e) % M32, (h[6] + f) % M32, (h[7] + g) % M32, (h[8] + hh) % M32
	end
	local out = {}
	for i = 1, 8 do
		local v = h[i]
		out[i] = string.char(rshift(v, 24), band(rshift(v, 16), 255), band(rshift(v, 8), 255), band(v, 255))
	end
	return table.concat(out)
end

local function hmac_sha256(key, msg)
	if #key > 64 then
		key = sha256(key)
	end
	key = key .. string.rep("\0", 64 - #key)
	local ipad, opad = {}, {}
	for i = 1, 64 do
		local k = key:byte(i)
		ipad[i] = string.char(bxor(k, 0x36))
		opad[i] = string.char(bxor(k, 0x5c))
	end
	return sha256(table.concat(opad) .. sha256(table.concat(ipad) .. msg))
end

-- pair_key returns the key of the preference as bytes, or nil.
local function pair_key()
	local k = pg.prefs.key
	if k == nil or k == "" then
		return nil
	end
	local hex = k:match("^hex:(%x+)$")
	if hex and #hex % 2 == 0 then
		return (hex:gsub("%x%x", function(p) return string.char(tonumber(p, 16)) end))
	end
	return k
end

local adders = {
	reserved = function(tree, r) tree:add(F.reserved, r) end,
	software = function(tree, r, softlen)
		tree:add(F.software, r:range(0, math.min(softlen, r:len())))
	end,
}

-- settings_part adds the bytes of a settings part (the rest is padding).
local function settings_part(tvb, tree)
	local total, index = tvb:range(52, 2):uint(), tvb:range(54, 1):uint()
	local n = math.min(SETTINGS_PART, total - index * SETTINGS_PART)
	if n <= 0 then
		tree:add(F.part, tvb:range(56, SETTINGS_PART)):add_proto_expert_info(E.malformed, "part beyond the settings' length")
		return
	end
	tree:add(F.part, tvb:range(56, n))
end

function pg.dissector(tvb, pinfo, root)
	local avail = tvb:len()
	if avail < 2 or tvb:range(0, 2):string() ~= "PG" then
		return 0
	end
	pinfo.cols.protocol = "Pairguard"
	local tree = root:add(pg, tvb:range(0, avail))
	tree:add(F.magic, tvb:range(0, 2))
	if avail < PREFIX_LEN then
		tree:add_proto_expert_info(E.length, string.format("%d bytes, shorter than the %d-byte prefix", avail, PREFIX_LEN))
		pinfo.cols.info = "Pairguard, truncated"
		return avail
	end
	local version = tvb:range(2, 1):uint()
	local ftype = tvb:range(3, 1):uint()
	local length = tvb:range(4, 2):uint()
	tree:add(F.version, tvb:range(2, 1))
	tree:add(F.type, tvb:range(3, 1))
	local litem = tree:add(F.length, tvb:range(4, 2))
	local tname = type_names[ftype] or string.format("type %d", ftype)
	pinfo.cols.info = string.format("Pairguard v%d %s", version, tname)

	local layout = layouts[version]
	local settings = version == 2 and ftype == TYPE_SETTINGS
	if settings then
		layout = settings_layout
	end
	if length < PREFIX_LEN + AUTH_LEN or length > avail then
		litem:add_proto_expert_info(E.length, string.format("length field %d, %d bytes captured", length, avail))
		pinfo.cols.info:append(" [wrong length]")
		return avail
	end
	if layout and length ~= layout.len then
		litem:add_proto_expert_info(E.length, string.format("version %d frames are %d bytes, length field says %d", version, layout.len, length))
		pinfo.cols.info:append(" [wrong length]")
	end

	local body = length - AUTH_LEN
	if layout and length == layout.len then
		local softlen = tvb:range(25, 1):uint()
		for _, fd in ipairs(layout.fields) do
			local off, size, name = fd[1], fd[2], fd[3]
			local r = tvb:range(off, size)
			if settings and name == "part" then
				settings_part(tvb, tree)
			elseif adders[name] then
				adders[name](tree, r, softlen)
			elseif name == "flags" then
				local ft = tree:add(F.flags, r)
				for _, b in ipairs({ "preferred", "handover", "lan1", "forced", "eligible" }) do
					ft:add(F[b], r)
				end
			else
				local item = tree:add(F[name], r)
				if name == "softlen" and softlen > 16 then
					item:add_proto_expert_info(E.malformed, "software version longer than 16 bytes")
				end
			end
		end
		if settings then
			pinfo.cols.info:append(string.format(", node %s, part %d of %d, seq %s",
				tostring(tvb:range(12, 8):uint64():tohex()), tvb:range(54, 1):uint() + 1, tvb:range(55, 1):uint(),
				tostring(tvb:range(28, 8):uint64())))
		else
			local role = tvb:range(21, 1):uint()
			pinfo.cols.info:append(string.format(", node %s, %s, epoch %s, seq %s",
				tostring(tvb:range(12, 8):uint64():tohex()), role_names[role] or tostring(role),
				tostring(tvb:range(28, 8):uint64()), tostring(tvb:range(44, 8):uint64())))
		end
	elseif not layout then
		tree:add_proto_expert_info(E.version, string.format("protocol version %d", version))
		local from = PREFIX_LEN
		if body >= FIXED_LEN then
			tree:add(F.flags, tvb:range(6, 2))
			tree:add(F.pair, tvb:range(8, 4))
			from = FIXED_LEN
		end
		if body > from then
			tree:add(F.body, tvb:range(from, body - from))
		end
	end

	local aitem = tree:add(F.auth, tvb:range(body, AUTH_LEN))
	local key = pair_key()
	if key then
		local want = hmac_sha256(key, tvb:raw(0, body)):sub(1, AUTH_LEN)
		local good = want == tvb:raw(body, AUTH_LEN)
		aitem:add(F.auth_good, tvb:range(body, AUTH_LEN), good)
		if not good then
			aitem:add_proto_expert_info(E.auth)
			pinfo.cols.info:append(" [bad authenticator]")
		end
	end
	if avail > length then
		tree:add(F.padding, tvb:range(length, avail - length))
	end
	return avail
end

DissectorTable.get("ethertype"):add(0x88B5, pg)
