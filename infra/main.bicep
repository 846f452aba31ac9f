// Everything `azd up` creates for the fashion retraining trigger, in one resource group:
// identities, storage, the Function App (Flex Consumption), monitoring, the Azure ML workspace
// with its computes and environment, the Event Grid system topic, and the role assignments.
// The Event Grid *subscription* is made by infra/hooks/postdeploy.sh: its endpoint needs the
// blobs extension key, which exists only once the app is deployed.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name; names the resource group and seeds every resource name.')
param environmentName string

@minLength(1)
@description('Region for every resource. It needs Flex Consumption and, for clusters, GPU quota.')
param location string

@description('Object id of the person running azd (AZURE_PRINCIPAL_ID): may upload batches and read runs. Empty: no roles for a person.')
param principalId string = ''

@allowed(['User', 'ServicePrincipal'])
@description('Kind of principalId: User for a person, ServicePrincipal for a CI login.')
param principalType string = 'User'

@allowed(['clusters', 'serverless'])
@description('clusters: CPU and GPU compute clusters that scale to 0; serverless: no clusters, Azure ML allocates per job.')
param computeMode string = 'clusters'

@description('GPU VM size for train_node (the GPU cluster, or serverless instance type). Needs quota in the region.')
param gpuVmSize string = 'Standard_NC4as_T4_v3'

@description('CPU VM size for prepare_data and score (the CPU cluster).')
param cpuVmSize string = 'Standard_DS3_v2'

@minValue(1)
@description('Most GPU nodes at once (each runs one train step).')
param gpuMaxNodes int = 1

@minValue(1)
@description('Most CPU nodes at once.')
param cpuMaxNodes int = 2

@description('true: the workspace storage accepts no account key; its datastores use identity-based access (systemDatastoresAuthMode) and the identities that read outputs get data roles on it.')
param mlStorageIdentityOnly bool = false

@description('Landing container: <container>/<batch>/<file>.')
param landingContainer string = 'landing'

@description('true: an Event Grid topic for run notifications (CloudEvents), wired to the app as NOTIFY_EVENTGRID_ENDPOINT, with the publisher role.')
param notifyEventGrid bool = false

@description('true: each new champion is rolled out to a managed online endpoint (SERVE_ENDPOINT), run as its own identity; at least one SERVE_INSTANCE_TYPE instance then runs around the clock (docs/deploy.md, idle cost).')
param serveEnabled bool = false

@description('The VM size of each serving deployment (one instance).')
param serveInstanceType string = 'Standard_DS3_v2'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    principalId: principalId
    principalType: principalType
    computeMode: computeMode
    gpuVmSize: gpuVmSize
    cpuVmSize: cpuVmSize
    gpuMaxNodes: gpuMaxNodes
    cpuMaxNodes: cpuMaxNodes
    mlStorageIdentityOnly: mlStorageIdentityOnly
    landingContainer: landingContainer
    notifyEventGrid: notifyEventGrid
    serveEnabled: serveEnabled
    serveInstanceType: serveInstanceType
  }
}

// azd stores these in .azure/<env>/.env; the hooks read them as environment variables.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output AZURE_FUNCTION_APP_URL string = resources.outputs.functionAppUrl
output AZURE_DATA_STORAGE_ACCOUNT string = resources.outputs.dataStorageAccount
output AZURE_EVENTGRID_SYSTEM_TOPIC string = resources.outputs.systemTopicName
output AZURE_EVENTGRID_JOB_TOPIC string = resources.outputs.jobEventsTopicName
output AZURE_DATA_STORAGE_ID string = resources.outputs.dataStorageId
output JOB_EVENTS_DEADLETTER_CONTAINER string = resources.outputs.deadLetterContainer
output LANDING_CONTAINER string = landingContainer
output AZUREML_WORKSPACE_NAME string = resources.outputs.workspaceName
output AZUREML_ENVIRONMENT string = resources.outputs.environment
output AZUREML_CPU_COMPUTE string = resources.outputs.cpuCompute
output AZUREML_GPU_COMPUTE string = resources.outputs.gpuCompute
output AZUREML_GPU_INSTANCE_TYPE string = gpuVmSize
output AZUREML_CPU_INSTANCE_TYPE string = cpuVmSize
