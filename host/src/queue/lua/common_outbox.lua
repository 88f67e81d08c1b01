-- hand_back(hash, outbox): moves every reply of a worker's outbox hash
-- (field '<token>:<reply_to>', value the record) to the tail of the outbox
-- list as an entry '<byte length of reply_to>:<reply_to><record>', and
-- deletes the hash. A field without a reply_to (a malformed entry claimed
-- earlier) goes back as it was. Returns how many moved.
local function hand_back(hash, outbox)
  local all = redis.call('HGETALL', hash)
  for j = 1, #all, 2 do
    local field, record = all[j], all[j + 1]
    local colon = string.find(field, ':', 1, true)
    local reply_to = colon and string.sub(field, colon + 1) or ''
    if reply_to == '' then
      redis.call('RPUSH', outbox, record)
    else
      redis.call('RPUSH', outbox, #reply_to .. ':' .. reply_to .. record)
    end
  end
  if #all > 0 then redis.call('DEL', hash) end
  return #all / 2
end
