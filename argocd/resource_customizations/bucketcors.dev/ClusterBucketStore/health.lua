-- Argo CD health of a ClusterBucketStore (bucketcors.dev/v1alpha1).
--   Healthy      Ready=True: namespaces it grants can use it
--   Progressing  not yet checked by the operator, or a spec edit not yet checked
--   Degraded     Ready=False: the spec cannot be used (its message says why)
local hs = {}

if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to check the store"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Generation " .. tostring(generation) .. " not yet checked"
  return hs
end

for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    if c.status == "True" then
      hs.status = "Healthy"
    else
      hs.status = "Degraded"
    end
    hs.message = c.reason .. ": " .. (c.message or "")
    return hs
  end
end

hs.status = "Progressing"
hs.message = "Waiting for the operator to check the store"
return hs
