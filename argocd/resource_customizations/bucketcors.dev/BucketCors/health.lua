-- Argo CD health of a BucketCors (bucketcors.dev/v1alpha1), from the status the operator writes.
--   Healthy      Ready=True: the bucket holds the rules (InSync, Applied)
--   Progressing  no status yet, a spec edit the operator has not seen yet, or being deleted
--   Suspended    ObserveOnly found the bucket differs from the spec (Drifted): nothing is
--                written until the policy is Full
--   Degraded     every other Ready=False; Stalled=True says it waits for a change made by
--                someone (InvalidSpec, ExpectationFailed, Conflict, ...), Reconciling=True
--                that the operator keeps retrying
local hs = {}

local function condition(conditions, type)
  for _, c in ipairs(conditions or {}) do
    if c.type == type then
      return c
    end
  end
  return nil
end

local function say(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator applies the deletion policy, then lets it go"
  return hs
end

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator's first pass"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Generation " .. tostring(generation) .. " not yet observed (the status is of generation "
    .. tostring(obj.status.observedGeneration) .. ")"
  return hs
end

local ready = condition(obj.status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator's first pass"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
elseif ready.reason == "Drifted" then
  hs.status = "Suspended"
else
  hs.status = "Degraded"
  local stalled = condition(obj.status.conditions, "Stalled")
  local reconciling = condition(obj.status.conditions, "Reconciling")
  if stalled ~= nil and stalled.status == "True" then
    hs.message = say(ready) .. " (stalled until something changes)"
    return hs
  elseif reconciling ~= nil and reconciling.status == "True" then
    hs.message = say(ready) .. " (retrying)"
    return hs
  end
end
hs.message = say(ready)
return hs
