-- meterhub-ingest's accept script (EVALSHA), embedded at build time (ingest/CMakeLists.txt).
--
-- Queues the batches one ingest worker accepted for one shard in one event-loop turn as ONE
-- stream entry, with a field "e" per batch, so that every per-entry cost (the XADD, the
-- writer's read, pending list, XACK and XDEL, and their AOF records) is paid once per group
-- rather than once per request (docs/benchmark.md).
--
-- KEYS[1]  the shard's stream, <prefix>:{n}:q
-- KEYS[2]  the shard's counter state, <prefix>:{n}:last: sensor sid -> "ts value" of the
--          newest reading queued
-- ARGV[1]  max backlog: refuse everything when the stream holds this many entries
-- ARGV[2]  n, the number of batches; then for each batch:
--            entry (a packed meterhub.QueueEntry), sensor sid ("" for heartbeats and gauges),
--            newest ts, its value, the number of (ts, value) pairs that follow, the pairs in
--            time order (counters only)
--
-- Refuses the whole call with MHBACKLOG when the stream is full. Otherwise, batch by batch and
-- in order, so that two batches of one sensor see each other: a counter batch whose first
-- reading newer than the stored one is smaller is refused (verdict "D" followed by the stored
-- "ts value"); else its newest reading is recorded (when newer than the stored one) and it
-- joins the entry (verdict ""). Returns {entry id, or "" when nothing joined; the stream's
-- length; a verdict per batch}. Atomic, so every worker and node sees one counter state.
local len = redis.call('XLEN', KEYS[1])
if len >= tonumber(ARGV[1]) then
  return redis.error_reply('MHBACKLOG stream backlog is full')
end
local out = {'', len}
local fields = {}
local i = 3
for k = 1, tonumber(ARGV[2]) do
  local sid = ARGV[i + 1]
  local stop = i + 4 + 2 * tonumber(ARGV[i + 4])
  local verdict = ''
  if sid ~= '' then
    local last = redis.call('HGET', KEYS[2], sid)
    local newer = true
    if last then
      local sp = string.find(last, ' ', 1, true)
      local lts = tonumber(string.sub(last, 1, sp - 1))
      local lval = tonumber(string.sub(last, sp + 1))
      for j = i + 5, stop, 2 do
        if tonumber(ARGV[j]) > lts then
          if tonumber(ARGV[j + 1]) < lval then verdict = 'D' .. last end
          break
        end
      end
      newer = tonumber(ARGV[i + 2]) > lts
    end
    if verdict == '' and newer then
      redis.call('HSET', KEYS[2], sid, ARGV[i + 2] .. ' ' .. ARGV[i + 3])
    end
  end
  if verdict == '' then
    fields[#fields + 1] = 'e'
    fields[#fields + 1] = ARGV[i]
  end
  out[k + 2] = verdict
  i = stop + 1
end
if #fields > 0 then
  out[1] = redis.call('XADD', KEYS[1], '*', unpack(fields))
  out[2] = len + 1
end
return out
