package redisstore

import "github.com/redis/go-redis/v9"

// The scripts make each Store method one atomic step on the server: Redis
// runs a script to completion before any other command, so no other node
// can act between a check and the write that depends on it.
//
// Liveness is judged by the server's clock (TIME), the clock that PXAT
// expiry runs on, so every gateway node agrees on which records are live
// however far its own clock drifts, and a record the scripts call expired
// is one that Redis is about to drop or has dropped. The scripts check the
// expiry themselves rather than rely on Redis having dropped the key,
// because Redis keeps a key through the millisecond of its deadline, and
// Record.Live calls it expired from that millisecond on.
//
// Expiry times are passed as decimal strings and given to Redis as such:
// Lua turns numbers into strings with 14 significant digits, which would
// garble a far-future millisecond time.
//
// The scripts read record values of layout versions 3, 2 and 1 (see
// record.go) and write fields only at offsets where every version that has
// the field keeps it (the expiry at 1 in all three, the flags at 17 in 3
// and 2), except Release, which rewrites a version-1 value in version 3 to
// give it a flags byte. Put writes the value Store.Put encoded, always in
// version 3.
//
// Two scripts reach a key that is not in KEYS, because its name is read
// from a value (the previous holder's connection key in put, the record
// key in getByConnection). On Redis Cluster that is allowed only because
// every key of a Store shares one hash tag, so it is always on the node
// that runs the script.

// luaPrelude holds the helpers every script starts with.
const luaPrelude = `
local function now()
	local t = redis.call('TIME')
	return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- parse returns the expiry (0: none), connection ID, owner, flags and
-- subject of a record value in layout version 3, 2 or 1 (see record.go). A
-- version-1 value has flags 0 and subject ''. Version 3 is version 2 with
-- Access appended, and no script needs Access, so one format reads both:
-- struct.unpack stops after Subject and leaves Access, up to 64 KiB,
-- uncopied on every lookup.
local function parse(v)
	local version = string.byte(v, 1)
	if version == 3 or version == 2 then
		local _, e, _, f, _, c, o, _, _, s = struct.unpack('>Bi8i8BHHc0Hc0Hc0Hc0Hc0', v)
		return e, c, o, f, s
	end
	if version == 1 then
		local _, e, _, c, o = struct.unpack('>Bi8i8Hc0Hc0', v)
		return e, c, o, 0, ''
	end
	error(redis.error_reply('ERR redisstore: record layout version ' .. tostring(version) .. ', want 3, 2 or 1'))
end
local function live(e, t)
	return e == 0 or t < e
end
-- released reports whether flags f have bit 0, Released, set.
local function released(f)
	return f % 2 == 1
end
`

// putScript claims a tunnel ID. It returns 1 when the record was stored
// (or, already expired, dropped) and 0 on a conflict. A live record is
// replaced by the rule of store.Replaces: the same owner, or a released
// record of the same non-empty subject. The new record arrives with its
// Released flag clear (Store.Put clears it), which is what makes one of
// several racing takeovers of a released record win and the rest conflict.
//
// KEYS[1] record key, KEYS[2] connection key of the new record.
// ARGV[1] tunnel ID, ARGV[2] encoded record, ARGV[3] its expiry ("0":
// none), ARGV[4] connection key prefix.
var putScript = redis.NewScript(luaPrelude + `
local t = now()
local e, c, o, _, s = parse(ARGV[2])
local old = redis.call('GET', KEYS[1])
if old then
	local oe, oc, oo, of, os = parse(old)
	if live(oe, t) and oo ~= o and not (released(of) and os ~= '' and os == s) then
		return 0
	end
	-- The previous holder loses its handle, unless its connection has
	-- since been put for another tunnel.
	local ock = ARGV[4] .. oc
	if redis.call('GET', ock) == ARGV[1] then
		redis.call('DEL', ock)
	end
end
if not live(e, t) then
	if old then
		redis.call('DEL', KEYS[1])
	end
	return 1
end
-- SET without PXAT also clears any TTL the keys had.
if e == 0 then
	redis.call('SET', KEYS[1], ARGV[2])
	redis.call('SET', KEYS[2], ARGV[1])
else
	redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
	redis.call('SET', KEYS[2], ARGV[1], 'PXAT', ARGV[3])
end
return 1
`)

// renewScript moves the expiry of a live record that still names the
// connection, and clears its Released flag. It returns 1 when it did (or,
// the new expiry being past, dropped the record) and 0 when the connection
// has lost the tunnel.
//
// KEYS[1] record key, KEYS[2] connection key.
// ARGV[1] tunnel ID, ARGV[2] connection ID, ARGV[3] new expiry ("0": none).
var renewScript = redis.NewScript(luaPrelude + `
local t = now()
local v = redis.call('GET', KEYS[1])
if not v then
	return 0
end
local e, c, _, f = parse(v)
if c ~= ARGV[2] or not live(e, t) then
	return 0
end
local ne = tonumber(ARGV[3])
-- The connection key may name another tunnel put later with the same
-- connection; its TTL is that record's business.
local indexed = redis.call('GET', KEYS[2]) == ARGV[1]
if not live(ne, t) then
	redis.call('DEL', KEYS[1])
	if indexed then
		redis.call('DEL', KEYS[2])
	end
	return 1
end
-- Offset 1 is the expiry field in every version, and 17 the flags in
-- versions 3 and 2 (a version-1 value has flags 0, so is never written
-- there); SETRANGE keeps the key's TTL, set next, and the bytes after
-- the range, Access's included.
redis.call('SETRANGE', KEYS[1], 1, struct.pack('>i8', ne))
if released(f) then
	redis.call('SETRANGE', KEYS[1], 17, string.char(f - 1))
end
if ne == 0 then
	redis.call('PERSIST', KEYS[1])
	if indexed then
		redis.call('PERSIST', KEYS[2])
	end
else
	redis.call('PEXPIREAT', KEYS[1], ARGV[3])
	if indexed then
		redis.call('PEXPIREAT', KEYS[2], ARGV[3])
	end
end
return 1
`)

// releaseScript sets the Released flag of a live record that still names
// the connection, leaving its expiry and TTL alone. It returns 1 when the
// record is now released and 0 when the connection has lost the tunnel.
//
// KEYS[1] record key.
// ARGV[1] connection ID.
var releaseScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if not v then
	return 0
end
local e, c, _, f = parse(v)
if c ~= ARGV[1] or not live(e, now()) then
	return 0
end
if string.byte(v, 1) == 1 then
	-- Version 1 has no flags: the same value in version 3, with Released
	-- set, Version 0, and an empty Subject and an empty Access appended.
	redis.call('SET', KEYS[1], '\3' .. string.sub(v, 2, 17) .. '\1\0\0' .. string.sub(v, 18) .. '\0\0\0\0', 'KEEPTTL')
elseif not released(f) then
	redis.call('SETRANGE', KEYS[1], 17, string.char(f + 1))
end
return 1
`)

// deleteScript removes a record if it still names the connection, and the
// connection key if it still names the tunnel. It returns 1.
//
// KEYS[1] record key, KEYS[2] connection key.
// ARGV[1] tunnel ID, ARGV[2] connection ID.
var deleteScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if v then
	local _, c = parse(v)
	if c == ARGV[2] then
		redis.call('DEL', KEYS[1])
		if redis.call('GET', KEYS[2]) == ARGV[1] then
			redis.call('DEL', KEYS[2])
		end
	end
end
return 1
`)

// getScript returns the value of a live record, or nil.
//
// KEYS[1] record key.
var getScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if not v then
	return false
end
if not live(parse(v), now()) then
	return false
end
return v
`)

// getByConnectionScript returns {tunnel ID, record value} for the live
// record that the connection key points at and that still names the
// connection, or nil.
//
// KEYS[1] connection key.
// ARGV[1] connection ID, ARGV[2] record key prefix.
var getByConnectionScript = redis.NewScript(luaPrelude + `
local id = redis.call('GET', KEYS[1])
if not id then
	return false
end
local v = redis.call('GET', ARGV[2] .. id)
if not v then
	return false
end
local e, c = parse(v)
if c ~= ARGV[1] or not live(e, now()) then
	return false
end
return {id, v}
`)
