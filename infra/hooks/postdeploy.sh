#!/bin/sh
# azd postdeploy hook: subscribe the blob trigger (landing_blob, source EventGrid) to BlobCreated
# events of the landing container. Its endpoint is the blobs extension webhook, whose key exists
# only once the deployed host has started, hence a hook and not Bicep. Creating it again updates
# it in place, so the hook can run on every deploy.
set -eu

: "${AZURE_RESOURCE_GROUP:?run this through azd (azd up / azd deploy)}"
: "${AZURE_FUNCTION_APP_NAME:?run this through azd (azd up / azd deploy)}"
: "${AZURE_FUNCTION_APP_URL:?run this through azd (azd up / azd deploy)}"
: "${AZURE_EVENTGRID_SYSTEM_TOPIC:?run this through azd (azd up / azd deploy)}"
: "${LANDING_CONTAINER:?run this through azd (azd up / azd deploy)}"

# Wake the host so that it indexes the functions and creates the extension key (up to 5 minutes).
key=""
tries=0
while [ -z "$key" ]; do
  curl --silent --output /dev/null --max-time 30 "$AZURE_FUNCTION_APP_URL" || true
  key="$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" \
    --name "$AZURE_FUNCTION_APP_NAME" --query systemKeys.blobs_extension --output tsv 2>/dev/null || true)"
  if [ -z "$key" ]; then
    tries=$((tries + 1))
    if [ "$tries" -ge 30 ]; then
      echo "no blobs_extension key on ${AZURE_FUNCTION_APP_NAME} after 5 minutes: check that the app started (Log stream), then run: azd hooks run postdeploy" >&2
      exit 1
    fi
    sleep 10
  fi
done

az eventgrid system-topic event-subscription create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --system-topic-name "$AZURE_EVENTGRID_SYSTEM_TOPIC" \
  --name landing-blob \
  --endpoint-type webhook \
  --endpoint "${AZURE_FUNCTION_APP_URL}/runtime/webhooks/blobs?functionName=Host.Functions.landing_blob&code=${key}" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with "/blobServices/default/containers/${LANDING_CONTAINER}/" \
  --only-show-errors --output none
echo "Event Grid: BlobCreated in ${LANDING_CONTAINER}/ now triggers landing_blob on ${AZURE_FUNCTION_APP_NAME}"
