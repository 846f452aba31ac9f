// The Function App on Flex Consumption (Python 3.11), running as a user-assigned identity, with
// every app setting it reads (see local.settings.json.example; tests/infra checks the two agree).
//
// Left at their documented defaults (not set here; tests/infra checks each default):
//   FUNCTIONS_WORKER_RUNTIME=python   (Flex Consumption takes it from functionAppConfig.runtime and refuses the setting)
//   LOCAL_RUNS_DIR=                   (local backend only)
//   LOCAL_MODELS_DIR=                 (local backend only)
//   PROMOTE_MIN_GAIN=0.0
//   BATCH_SETTLE_SECONDS=30
//   SWEEP_CONCURRENCY=8
//   SWEEP_BUDGET_SECONDS=240          (below host.json's 10-minute functionTimeout)
//   MAX_ACTIVE_RUNS=4                 (GPU jobs at once; more wait Queued, oldest first)
//   TRAIN_BATCH_SIZE=256
//   TRAIN_LEARNING_RATE=              (auto: the model preset's own)
//   TRAIN_SEED=0
//   SERVE_MAX_IMAGES=512              (images one scoring request may hold)
//   SERVE_SMOKE_IMAGES=256            (test images replayed through a new deployment before it takes traffic)
//   NOTIFY_WEBHOOK_URL=               (optional sink: set it, and its secret, as app settings or Key Vault references)
//   NOTIFY_WEBHOOK_SECRET=            (optional: the webhook's HMAC secret; never in a template)
//   NOTIFY_SEND_SECONDS=30
//   NOTIFY_TICK_SECONDS=120           (below host.json's 10-minute functionTimeout)
//   NOTIFY_CONCURRENCY=8
// AzureWebJobsStorage and DataStorage are identity-based: their __serviceUri settings below.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param hostBlobEndpoint string
param hostQueueEndpoint string
param deploymentContainer string
param dataBlobEndpoint string
param dataQueueEndpoint string
param dataTableEndpoint string
param landingContainer string
@description('Where each data version is copied before it is registered: <DATA_ASSET_NAME>/<version>/<file>.')
param datasetsContainer string = 'datasets'
param runsTable string = 'runs'
param settleQueue string = 'retrain-settle'
param appInsightsConnectionString string
param workspaceName string
param cpuCompute string
param gpuCompute string
param gpuInstanceType string
param mlEnvironment string
@description('The run notifications topic\'s endpoint (notifyEventGrid); empty: none.')
param notifyEventGridEndpoint string = ''
param dataAssetName string = 'fashion-mnist'
@description('The registered model every completed run adds a version to.')
param modelName string = 'fashion-mnist-cnn'
param experimentName string = 'fashion-retraining'
param trainEpochs int = 20
param sweepSchedule string = '0 */5 * * * *'
@description('The managed online endpoint each new champion is rolled out to (serveEnabled); empty: off.')
param serveEndpoint string = ''
@description('The identity the endpoint runs as (serveEnabled); empty: none.')
param serveIdentityId string = ''
param serveInstanceType string = 'Standard_DS3_v2'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  // checkov:skip=CKV_AZURE_225:zone redundancy on Flex Consumption needs always-ready instances, which cost money while idle
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' }) // azure.yaml deploys service "api" here
  kind: 'functionapp,linux'
  // checkov:skip=CKV_AZURE_222:Event Grid and webhook callers reach it over the internet; function keys guard it
  // checkov:skip=CKV_AZURE_212:the plan scales to zero between batches; a retry of the event covers a lost instance
  // checkov:skip=CKV_AZURE_213:no always-on instance to probe: Flex Consumption starts instances on demand
  // checkov:skip=CKV_AZURE_78:Flex Consumption rejects siteConfig.ftpsState (ARM error 51021); it deploys from a blob container, not FTP
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false // checkov:skip=CKV_AZURE_17:callers use function keys; Event Grid cannot present a client certificate
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
      appSettings: [
        // The host's own storage, identity-based.
        { name: 'AzureWebJobsStorage__blobServiceUri', value: hostBlobEndpoint }
        { name: 'AzureWebJobsStorage__queueServiceUri', value: hostQueueEndpoint }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        // Telemetry with the identity (Application Insights refuses keys).
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsightsConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
        // The data account: landing and datasets containers, runs table, settle queue.
        { name: 'DataStorage__blobServiceUri', value: dataBlobEndpoint }
        { name: 'DataStorage__queueServiceUri', value: dataQueueEndpoint }
        { name: 'DataStorage__tableServiceUri', value: dataTableEndpoint }
        { name: 'DataStorage__credential', value: 'managedidentity' }
        { name: 'DataStorage__clientId', value: identityClientId }
        { name: 'LANDING_CONTAINER', value: landingContainer }
        { name: 'DATASETS_CONTAINER', value: datasetsContainer }
        { name: 'RUNS_TABLE', value: runsTable }
        { name: 'SETTLE_QUEUE', value: settleQueue }
        { name: 'BLOB_TRIGGER_SOURCE', value: 'EventGrid' } // the only blob source on Flex Consumption
        { name: 'SWEEP_SCHEDULE', value: sweepSchedule }
        { name: 'JOB_EVENTS', value: 'true' } // job_events: Azure ML's RunStatusChanged (postdeploy subscribes it)
        // Azure ML.
        { name: 'RETRAIN_BACKEND', value: 'azureml' }
        { name: 'AZURE_SUBSCRIPTION_ID', value: subscription().subscriptionId }
        { name: 'AZURE_RESOURCE_GROUP', value: resourceGroup().name }
        { name: 'AZUREML_WORKSPACE_NAME', value: workspaceName }
        { name: 'AZURE_CLIENT_ID', value: identityClientId }
        { name: 'AZUREML_CPU_COMPUTE', value: cpuCompute }
        { name: 'AZUREML_GPU_COMPUTE', value: gpuCompute }
        { name: 'AZUREML_GPU_INSTANCE_TYPE', value: gpuInstanceType }
        { name: 'AZUREML_ENVIRONMENT', value: mlEnvironment }
        { name: 'NOTIFY_EVENTGRID_ENDPOINT', value: notifyEventGridEndpoint }
        { name: 'DATA_ASSET_NAME', value: dataAssetName }
        { name: 'MODEL_NAME', value: modelName }
        { name: 'EXPERIMENT_NAME', value: experimentName }
        { name: 'TRAIN_EPOCHS', value: string(trainEpochs) }
        // Serving (opt-in: serveEnabled): the champion rolled out to a managed online endpoint.
        { name: 'SERVE_ENDPOINT', value: serveEndpoint }
        { name: 'SERVE_IDENTITY', value: serveIdentityId }
        { name: 'SERVE_INSTANCE_TYPE', value: serveInstanceType }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostBlobEndpoint}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
