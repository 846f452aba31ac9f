# azd postdeploy hook (Windows): the same as postdeploy.sh. Subscribe the blob trigger's webhook
# to BlobCreated events of the landing container, and job_events to the workspace's
# RunStatusChanged events, once the host has created its extension keys.
$ErrorActionPreference = 'Stop'
foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_URL', 'AZURE_EVENTGRID_SYSTEM_TOPIC', 'LANDING_CONTAINER', 'AZURE_EVENTGRID_JOB_TOPIC', 'AZURE_DATA_STORAGE_ID', 'JOB_EVENTS_DEADLETTER_CONTAINER') {
    if (-not [Environment]::GetEnvironmentVariable($name)) { throw "$name is not set: run this through azd (azd up / azd deploy)" }
}

$key = ''
for ($attempt = 1; -not $key; $attempt++) {
    try { Invoke-WebRequest -Uri $env:AZURE_FUNCTION_APP_URL -TimeoutSec 30 -UseBasicParsing | Out-Null } catch { }
    $key = az functionapp keys list --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
        --query systemKeys.blobs_extension --output tsv 2>$null
    if (-not $key) {
        if ($attempt -ge 30) { throw "no blobs_extension key on $($env:AZURE_FUNCTION_APP_NAME) after 5 minutes: check that the app started, then run: azd hooks run postdeploy" }
        Start-Sleep -Seconds 10
    }
}

# az is az.cmd on Windows, and cmd.exe splits an unquoted argument at '&' (the key would be cut
# off and run as a command). Azure CLI's "Quoting issues with PowerShell" guidance: hand cmd the
# URL inside literal double quotes; PowerShell passes them as they are to a .cmd file.
$endpoint = "$($env:AZURE_FUNCTION_APP_URL)/runtime/webhooks/blobs?functionName=Host.Functions.landing_blob&code=$key"
$PSNativeCommandArgumentPassing = 'Legacy' # the same on every PowerShell 7 setting
az eventgrid system-topic event-subscription create `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --system-topic-name $env:AZURE_EVENTGRID_SYSTEM_TOPIC `
    --name landing-blob `
    --endpoint-type webhook `
    --endpoint "`"$endpoint`"" `
    --included-event-types Microsoft.Storage.BlobCreated `
    --subject-begins-with "/blobServices/default/containers/$($env:LANDING_CONTAINER)/" `
    --only-show-errors --output none
if ($LASTEXITCODE -ne 0) { throw 'az eventgrid system-topic event-subscription create failed' }
Write-Output "Event Grid: BlobCreated in $($env:LANDING_CONTAINER)/ now triggers landing_blob on $($env:AZURE_FUNCTION_APP_NAME)"

# Azure ML's RunStatusChanged (in preview) for this app's jobs only: those carrying the run_id tag
# (advanced filters cannot address keys with dots). Retries for 24 hours, then dead-letters to the
# data account as the topic's identity; the timer records every run whatever happens to its events.
$eventsKey = az functionapp keys list --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME `
    --query systemKeys.eventgrid_extension --output tsv
if (-not $eventsKey) { throw "no eventgrid_extension key on $($env:AZURE_FUNCTION_APP_NAME): check that job_events was indexed, then run: azd hooks run postdeploy" }
$eventsEndpoint = "$($env:AZURE_FUNCTION_APP_URL)/runtime/webhooks/eventgrid?functionName=job_events&code=$eventsKey"
az eventgrid system-topic event-subscription create `
    --resource-group $env:AZURE_RESOURCE_GROUP `
    --system-topic-name $env:AZURE_EVENTGRID_JOB_TOPIC `
    --name job-events `
    --endpoint-type webhook `
    --endpoint "`"$eventsEndpoint`"" `
    --included-event-types Microsoft.MachineLearningServices.RunStatusChanged `
    --advanced-filter data.runTags.run_id IsNotNull `
    --max-delivery-attempts 30 --event-ttl 1440 `
    --deadletter-identity systemassigned `
    --deadletter-identity-endpoint-type storageblob `
    --deadletter-identity-endpoint "$($env:AZURE_DATA_STORAGE_ID)/blobServices/default/containers/$($env:JOB_EVENTS_DEADLETTER_CONTAINER)" `
    --only-show-errors --output none
if ($LASTEXITCODE -ne 0) { throw 'az eventgrid system-topic event-subscription create (job-events) failed' }
Write-Output "Event Grid: RunStatusChanged of this app's Azure ML jobs now triggers job_events on $($env:AZURE_FUNCTION_APP_NAME)"
