#!/bin/sh
# azd postprovision hook: start the image build of the environment that provisioning registered
# (AZUREML_ENVIRONMENT, name:version), so that no retraining run waits for it. Azure ML builds an
# environment image on first use, so this submits a one-minute job that uses it. The job is named
# after the version: provisioning again with an unchanged environment submits nothing.
set -eu

: "${AZURE_RESOURCE_GROUP:?run this through azd (azd up / azd provision)}"
: "${AZUREML_WORKSPACE_NAME:?run this through azd (azd up / azd provision)}"
: "${AZUREML_ENVIRONMENT:?run this through azd (azd up / azd provision)}"
: "${AZUREML_CPU_COMPUTE:?run this through azd (azd up / azd provision)}"
instance_type="${AZUREML_CPU_INSTANCE_TYPE:-Standard_DS3_v2}"

version="${AZUREML_ENVIRONMENT##*:}"
job="build-env-${version}"
set -- --resource-group "$AZURE_RESOURCE_GROUP" --workspace-name "$AZUREML_WORKSPACE_NAME"

az extension add --name ml --upgrade --yes --only-show-errors

if az ml job show --name "$job" "$@" --query status --output tsv >/dev/null 2>&1; then
  echo "environment ${AZUREML_ENVIRONMENT}: build job ${job} already submitted"
  exit 0
fi

if [ "$AZUREML_CPU_COMPUTE" = "serverless" ]; then
  placement="resources:
  instance_type: ${instance_type}
  instance_count: 1"
else
  placement="compute: azureml:${AZUREML_CPU_COMPUTE}"
fi

spec="$(mktemp)"
trap 'rm -f "$spec"' EXIT
cat >"$spec" <<YAML
\$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
type: command
name: ${job}
display_name: Build the environment of the components
experiment_name: environment-build
command: python -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)"
environment: azureml:${AZUREML_ENVIRONMENT}
${placement}
YAML

az ml job create --file "$spec" "$@" --only-show-errors --output none
echo "environment ${AZUREML_ENVIRONMENT}: image build started by job ${job} (10-20 minutes)."
echo "watch it: az ml job show --name ${job} -g ${AZURE_RESOURCE_GROUP} -w ${AZUREML_WORKSPACE_NAME} --query status"
