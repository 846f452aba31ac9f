#!/bin/sh
# azd postdeploy hook: subscribe the blob trigger (landing_blob, source EventGrid) to BlobCreated
# events of the landing container, and job_events to the workspace's RunStatusChanged events.
# Their endpoints are the blobs and eventgrid extension webhooks, whose keys exist only once the
# deployed host has started, hence a hook and not Bicep. Creating them again updates them in
# place, so the hook can run on every deploy.
set -eu

: "${AZURE_RESOURCE_GROUP:?run this through azd (azd up / azd deploy)}"
: "${AZURE_FUNCTION_APP_NAME:?run this through azd (azd up / azd deploy)}"
: "${AZURE_FUNCTION_APP_URL:?run this through azd (azd up / azd deploy)}"
: "${AZURE_EVENTGRID_SYSTEM_TOPIC:?run this through azd (azd up / azd deploy)}"
: "${LANDING_CONTAINER:?run this through azd (azd up / azd deploy)}"
: "${AZURE_EVENTGRID_JOB_TOPIC:?run this through azd (azd up / azd deploy)}"
: "${AZURE_DATA_STORAGE_ID:?run this through azd (azd up / azd deploy)}"
: "${JOB_EVENTS_DEADLETTER_CONTAINER:?run this through azd (azd up / azd deploy)}"

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

# Azure ML's RunStatusChanged (in preview) for this app's jobs only: those carrying the run_id tag
# (advanced filters cannot address keys with dots, such as azureml.pipelineid). Event Grid retries
# for up to 24 hours, then dead-letters to the data account as the topic's identity; the timer
# records every run whatever happens to its events.
events_key="$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" --query systemKeys.eventgrid_extension --output tsv)"
if [ -z "$events_key" ]; then
  echo "no eventgrid_extension key on ${AZURE_FUNCTION_APP_NAME}: check that job_events was indexed (Log stream), then run: azd hooks run postdeploy" >&2
  exit 1
fi
az eventgrid system-topic event-subscription create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --system-topic-name "$AZURE_EVENTGRID_JOB_TOPIC" \
  --name job-events \
  --endpoint-type webhook \
  --endpoint "${AZURE_FUNCTION_APP_URL}/runtime/webhooks/eventgrid?functionName=job_events&code=${events_key}" \
  --included-event-types Microsoft.MachineLearningServices.RunStatusChanged \
  --advanced-filter data.runTags.run_id IsNotNull \
  --max-delivery-attempts 30 --event-ttl 1440 \
  --deadletter-identity systemassigned \
  --deadletter-identity-endpoint-type storageblob \
  --deadletter-identity-endpoint "${AZURE_DATA_STORAGE_ID}/blobServices/default/containers/${JOB_EVENTS_DEADLETTER_CONTAINER}" \
  --only-show-errors --output none
echo "Event Grid: RunStatusChanged of this app's Azure ML jobs now triggers job_events on ${AZURE_FUNCTION_APP_NAME}"
