-- Rotates through the first N session cookies of a file: wrk ... URL -- FILE N
local cookies = {}
local count = 0

init = function(args)
  local limit = tonumber(args[2])
  for line in io.lines(args[1]) do
    count = count + 1
    cookies[count] = line
    if count >= limit then break end
  end
end

local index = 0
request = function()
  index = index % count + 1
  return wrk.format("GET", "/app", { ["Cookie"] = "portcullis_session=" .. cookies[index] })
end
