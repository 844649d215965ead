-- GCRA (generic cell rate algorithm) for one key, run atomically by Redis.
--
-- KEYS[1]  the key; its value is the theoretical arrival time (TAT) of the
--          key's next event, in microseconds since the Unix epoch. A missing
--          key means a full bucket.
-- ARGV[1]  now, microseconds since the Unix epoch, from the caller's clock
-- ARGV[2]  the emission interval T: microseconds per event (>= 1)
-- ARGV[3]  the burst B: the bucket size in events (>= 1)
-- ARGV[4]  extra milliseconds the key lives past the moment it is full again
--
-- Returns {allowed (1 or 0), retry_after_us, remaining}.
--
-- A key is allowed when, after adding its event, its TAT runs no more than
-- B*T ahead of now: that is a token bucket of B tokens refilling one per T.
-- All values are integers below 2^53, so Lua's doubles hold them exactly;
-- the TAT is written with %d so that it is stored without an exponent.

local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local slack = tonumber(ARGV[4])

local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end

local tolerance = burst * interval
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > tolerance then
  return {0, ahead - tolerance, 0}
end

-- Once now reaches new_tat the bucket is full and the key means nothing
-- more than a missing one: let it expire then.
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil(ahead / 1000) + slack)
return {1, 0, math.floor((tolerance - ahead) / interval)}
