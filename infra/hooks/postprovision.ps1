# azd postprovision hook (Windows): the same as postprovision.sh. Start the image build of the
# registered environment with a one-minute job named after its version.
$ErrorActionPreference = 'Stop'
foreach ($name in 'AZURE_RESOURCE_GROUP', 'AZUREML_WORKSPACE_NAME', 'AZUREML_ENVIRONMENT', 'AZUREML_CPU_COMPUTE') {
    if (-not [Environment]::GetEnvironmentVariable($name)) { throw "$name is not set: run this through azd (azd up / azd provision)" }
}
$instanceType = if ($env:AZUREML_CPU_INSTANCE_TYPE) { $env:AZUREML_CPU_INSTANCE_TYPE } else { 'Standard_DS3_v2' }
$version = $env:AZUREML_ENVIRONMENT.Split(':')[-1]
$job = "build-env-$version"
$where = @('--resource-group', $env:AZURE_RESOURCE_GROUP, '--workspace-name', $env:AZUREML_WORKSPACE_NAME)

az extension add --name ml --upgrade --yes --only-show-errors
if ($LASTEXITCODE -ne 0) { throw 'az extension add --name ml failed' }

az ml job show --name $job @where --query status --output tsv 2>$null | Out-Null
if ($LASTEXITCODE -eq 0) {
    Write-Output "environment $($env:AZUREML_ENVIRONMENT): build job $job already submitted"
    exit 0
}

if ($env:AZUREML_CPU_COMPUTE -eq 'serverless') {
    $placement = "resources:`n  instance_type: $instanceType`n  instance_count: 1"
} else {
    $placement = "compute: azureml:$($env:AZUREML_CPU_COMPUTE)"
}
$spec = New-TemporaryFile
try {
    @(
        '$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json'
        'type: command'
        "name: $job"
        'display_name: Build the environment of the components'
        'experiment_name: environment-build'
        'command: python -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"'
        "environment: azureml:$($env:AZUREML_ENVIRONMENT)"
        $placement
    ) -join "`n" | Set-Content -Path $spec -Encoding utf8
    az ml job create --file $spec @where --only-show-errors --output none
    if ($LASTEXITCODE -ne 0) { throw "az ml job create $job failed" }
} finally {
    Remove-Item $spec -ErrorAction SilentlyContinue
}
Write-Output "environment $($env:AZUREML_ENVIRONMENT): image build started by job $job (10-20 minutes)."
