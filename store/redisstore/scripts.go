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
// garble a far-future millisecond time. For the same reason the scripts
// hand Redis the server's time as the string now() builds, and a pool's
// expiry as the score string Redis returned.
//
// The scripts read record values of layout versions 3, 2 and 1 (see
// record.go) and write fields only at offsets where every version that has
// the field keeps it (the expiry at 1 in all three, the flags at 17 in 3
// and 2), except Release, which rewrites a version-1 value in version 3 to
// give it a flags byte. Put writes the value Store.Put encoded, always in
// version 3. A record key that holds a pool marker (layout version 4) is
// told apart by its first byte before anything parses it as a record; the
// members of a pool are always in version 3, which the scripts rewrite
// whole in their hash.
//
// Scripts reach keys that are not in KEYS, because their names are read
// from a value: the previous holder's connection key in put and join, the
// connection keys of a pool's expired members wherever a pool is settled,
// and the record and members keys in getByConnection. On Redis Cluster
// that is allowed only because every key of a Store shares one hash tag,
// so it is always on the node that runs the script.
//
// Every script that takes a tunnel's keys takes them in the order
// Store.keys builds them: KEYS[1] record key, KEYS[2] the pool's expiries
// key, KEYS[3] its members key, and KEYS[4], for the scripts that need it,
// the caller's connection key.

// luaPrelude holds the helpers every script starts with.
const luaPrelude = `
-- now returns the server's time in Unix milliseconds, as a number and as
-- the decimal string to hand Redis.
local function now()
	local t = redis.call('TIME')
	local ms = math.floor(tonumber(t[2]) / 1000)
	return tonumber(t[1]) * 1000 + ms, t[1] .. string.format('%03d', ms)
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
-- isPool reports whether a record key's value is a pool marker (layout
-- version 4, see record.go) rather than a record. A value of version 4
-- that is not a well-formed marker is an error.
local function isPool(v)
	if string.byte(v, 1) ~= 4 then
		return false
	end
	if #v < 3 or #v ~= 3 + struct.unpack('>H', v, 2) then
		error(redis.error_reply('ERR redisstore: malformed pool marker'))
	end
	return true
end
-- poolOwner returns the owner a pool marker names.
local function poolOwner(v)
	return string.sub(v, 4)
end
-- withExpiry returns a member's value (layout 3) with expiry e and its
-- Released flag clear.
local function withExpiry(v, e, f)
	return string.sub(v, 1, 1) .. struct.pack('>i8', e) .. string.sub(v, 10, 17) .. string.char(f - f % 2) .. string.sub(v, 19)
end
-- score returns the expiries key's score of a member that expires at e,
-- given as the decimal string es: +inf for none.
local function score(e, es)
	if e == 0 then
		return '+inf'
	end
	return es
end
-- settle frees the members of a pool that have expired at ts, the server's
-- time as a string, with their connection keys if those still name the
-- tunnel (ARGV[1] of every script that settles, with the connection key
-- prefix cp); then it gives the pool's keys (tk, ek, mk) the expiry of its
-- last member, or deletes them when no member is left. It returns whether
-- the pool has a live member.
local function settle(tk, ek, mk, ts, cp)
	local gone = redis.call('ZRANGEBYSCORE', ek, '-inf', ts)
	for _, c in ipairs(gone) do
		redis.call('HDEL', mk, c)
		if redis.call('GET', cp .. c) == ARGV[1] then
			redis.call('DEL', cp .. c)
		end
	end
	if #gone > 0 then
		redis.call('ZREMRANGEBYSCORE', ek, '-inf', ts)
	end
	local last = redis.call('ZRANGE', ek, -1, -1, 'WITHSCORES')
	if #last == 0 then
		redis.call('DEL', tk, ek, mk)
		return false
	end
	for _, k in ipairs({tk, ek, mk}) do
		if last[2] == 'inf' then
			redis.call('PERSIST', k)
		else
			redis.call('PEXPIREAT', k, last[2])
		end
	end
	return true
end
`

// putScript claims a tunnel ID for a plain record. It returns 1 when the
// record was stored (or, already expired, dropped) and 0 on a conflict. A
// live plain record is replaced by the rule of store.Replaces: the same
// owner, or a released record of the same non-empty subject. A pool with
// a live member is a conflict, whoever its owner; a pool without one is
// replaced. The new record arrives with its Released flag clear
// (Store.Put clears it), which is what makes one of several racing
// takeovers of a released record win and the rest conflict.
//
// KEYS: record, expiries, members, connection key of the new record.
// ARGV[1] tunnel ID, ARGV[2] encoded record, ARGV[3] its expiry ("0":
// none), ARGV[4] connection key prefix.
var putScript = redis.NewScript(luaPrelude + `
local t, ts = now()
local e, c, o, _, s = parse(ARGV[2])
local old = redis.call('GET', KEYS[1])
if old and isPool(old) then
	if settle(KEYS[1], KEYS[2], KEYS[3], ts, ARGV[4]) then
		return 0
	end
	old = false
end
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
	redis.call('SET', KEYS[4], ARGV[1])
else
	redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
	redis.call('SET', KEYS[4], ARGV[1], 'PXAT', ARGV[3])
end
return 1
`)

// joinScript adds a member to a pool, or replaces the member of its
// connection. It returns 1 when the member was stored (or, already
// expired, dropped along with the member it replaces) and 0 on a
// conflict: a live plain record of any owner, or a pool with a live
// member of another owner. A pool without a live member, and an expired
// plain record, are replaced by a new pool. The member arrives with its
// Released flag clear.
//
// KEYS: record, expiries, members, connection key of the new member.
// ARGV[1] tunnel ID, ARGV[2] encoded member (layout 3), ARGV[3] its
// expiry ("0": none), ARGV[4] connection key prefix, ARGV[5] the pool
// marker of the member's owner.
var joinScript = redis.NewScript(luaPrelude + `
local t, ts = now()
local e, c, o = parse(ARGV[2])
local old = redis.call('GET', KEYS[1])
local joining = false
if old and isPool(old) then
	joining = settle(KEYS[1], KEYS[2], KEYS[3], ts, ARGV[4])
	if joining and poolOwner(old) ~= o then
		return 0
	end
elseif old then
	local oe, oc = parse(old)
	if live(oe, t) then
		return 0
	end
	local ock = ARGV[4] .. oc
	if redis.call('GET', ock) == ARGV[1] then
		redis.call('DEL', ock)
	end
	redis.call('DEL', KEYS[1])
end
if not joining then
	-- A new pool: nothing of an earlier one may linger.
	redis.call('DEL', KEYS[2], KEYS[3])
end
if not live(e, t) then
	if redis.call('HDEL', KEYS[3], c) == 1 then
		redis.call('ZREM', KEYS[2], c)
		if redis.call('GET', KEYS[4]) == ARGV[1] then
			redis.call('DEL', KEYS[4])
		end
		settle(KEYS[1], KEYS[2], KEYS[3], ts, ARGV[4])
	end
	return 1
end
redis.call('HSET', KEYS[3], c, ARGV[2])
redis.call('ZADD', KEYS[2], score(e, ARGV[3]), c)
redis.call('SET', KEYS[1], ARGV[5])
if e == 0 then
	redis.call('SET', KEYS[4], ARGV[1])
else
	redis.call('SET', KEYS[4], ARGV[1], 'PXAT', ARGV[3])
end
settle(KEYS[1], KEYS[2], KEYS[3], ts, ARGV[4])
return 1
`)

// renewScript moves the expiry of a live record that still names the
// connection, or of the live member of the connection, and clears its
// Released flag. It returns 1 when it did (or, the new expiry being past,
// dropped the record) and 0 when the connection has lost the tunnel.
//
// KEYS: record, expiries, members, connection key.
// ARGV[1] tunnel ID, ARGV[2] connection ID, ARGV[3] new expiry ("0":
// none), ARGV[4] connection key prefix.
var renewScript = redis.NewScript(luaPrelude + `
local t, ts = now()
local v = redis.call('GET', KEYS[1])
if not v then
	return 0
end
local ne = tonumber(ARGV[3])
-- The connection key may name another tunnel put later with the same
-- connection; its TTL is that record's business.
local indexed = redis.call('GET', KEYS[4]) == ARGV[1]
if isPool(v) then
	local mv = redis.call('HGET', KEYS[3], ARGV[2])
	if not mv then
		return 0
	end
	local e, _, _, f = parse(mv)
	if not live(e, t) then
		return 0
	end
	if live(ne, t) then
		redis.call('HSET', KEYS[3], ARGV[2], withExpiry(mv, ne, f))
		redis.call('ZADD', KEYS[2], score(ne, ARGV[3]), ARGV[2])
		if indexed and ne == 0 then
			redis.call('PERSIST', KEYS[4])
		elseif indexed then
			redis.call('PEXPIREAT', KEYS[4], ARGV[3])
		end
	else
		redis.call('HDEL', KEYS[3], ARGV[2])
		redis.call('ZREM', KEYS[2], ARGV[2])
		if indexed then
			redis.call('DEL', KEYS[4])
		end
	end
	settle(KEYS[1], KEYS[2], KEYS[3], ts, ARGV[4])
	return 1
end
local e, c, _, f = parse(v)
if c ~= ARGV[2] or not live(e, t) then
	return 0
end
if not live(ne, t) then
	redis.call('DEL', KEYS[1])
	if indexed then
		redis.call('DEL', KEYS[4])
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
		redis.call('PERSIST', KEYS[4])
	end
else
	redis.call('PEXPIREAT', KEYS[1], ARGV[3])
	if indexed then
		redis.call('PEXPIREAT', KEYS[4], ARGV[3])
	end
end
return 1
`)

// releaseScript sets the Released flag of a live record that still names
// the connection, or of the live member of the connection, leaving its
// expiry and TTL alone. It returns 1 when the record is now released and
// 0 when the connection has lost the tunnel.
//
// KEYS: record, expiries, members.
// ARGV[1] connection ID.
var releaseScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if not v then
	return 0
end
if isPool(v) then
	local mv = redis.call('HGET', KEYS[3], ARGV[1])
	if not mv then
		return 0
	end
	local e, _, _, f = parse(mv)
	if not live(e, now()) then
		return 0
	end
	if not released(f) then
		redis.call('HSET', KEYS[3], ARGV[1], string.sub(mv, 1, 17) .. string.char(f + 1) .. string.sub(mv, 19))
	end
	return 1
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

// deleteScript removes a record if it still names the connection, or the
// member of the connection, and the connection key if it still names the
// tunnel. It returns 1.
//
// KEYS: record, expiries, members, connection key.
// ARGV[1] tunnel ID, ARGV[2] connection ID, ARGV[3] connection key prefix.
var deleteScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if not v then
	return 1
end
if isPool(v) then
	if redis.call('HDEL', KEYS[3], ARGV[2]) == 1 then
		redis.call('ZREM', KEYS[2], ARGV[2])
		if redis.call('GET', KEYS[4]) == ARGV[1] then
			redis.call('DEL', KEYS[4])
		end
		local _, ts = now()
		settle(KEYS[1], KEYS[2], KEYS[3], ts, ARGV[3])
	end
	return 1
end
local _, c = parse(v)
if c == ARGV[2] then
	redis.call('DEL', KEYS[1])
	if redis.call('GET', KEYS[4]) == ARGV[1] then
		redis.call('DEL', KEYS[4])
	end
end
return 1
`)

// getScript returns the value of a live record, or a one-element array
// holding the value of a live member of the pool (the one that expires
// last), or nil.
//
// KEYS: record, expiries, members.
var getScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if not v then
	return false
end
if isPool(v) then
	local _, ts = now()
	local c = redis.call('ZREVRANGEBYSCORE', KEYS[2], '+inf', '(' .. ts, 'LIMIT', 0, 1)[1]
	local mv = c and redis.call('HGET', KEYS[3], c)
	if not mv then
		return false
	end
	return {mv}
end
if not live(parse(v), now()) then
	return false
end
return v
`)

// membersScript returns {0, value} for a live record, {1, value...} with
// the values of the live members of a pool, or nil.
//
// KEYS: record, expiries, members.
var membersScript = redis.NewScript(luaPrelude + `
local v = redis.call('GET', KEYS[1])
if not v then
	return false
end
local t, ts = now()
if not isPool(v) then
	if not live(parse(v), t) then
		return false
	end
	return {0, v}
end
local out = {1}
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ts, '+inf')) do
	local mv = redis.call('HGET', KEYS[3], c)
	if mv then
		out[#out + 1] = mv
	end
end
if #out == 1 then
	return false
end
return out
`)

// getByConnectionScript returns {tunnel ID, record value} for the live
// record that the connection key points at and that still names the
// connection, {tunnel ID, member value, 1} for the live member of that
// connection in the pool it points at, or nil.
//
// KEYS[1] connection key.
// ARGV[1] connection ID, ARGV[2] record key prefix, ARGV[3] members key
// prefix.
var getByConnectionScript = redis.NewScript(luaPrelude + `
local id = redis.call('GET', KEYS[1])
if not id then
	return false
end
local v = redis.call('GET', ARGV[2] .. id)
if not v then
	return false
end
if isPool(v) then
	local mv = redis.call('HGET', ARGV[3] .. id, ARGV[1])
	if not mv or not live(parse(mv), now()) then
		return false
	end
	return {id, mv, 1}
end
local e, c = parse(v)
if c ~= ARGV[1] or not live(e, now()) then
	return false
end
return {id, v}
`)
