import json
from retrain.backends.azureml_models import AzureMLModelRegistry
from amlhelpers import aml_settings

def test_scratch(backend, use_fake, make_request):
    req = make_request("batch-s")
    backend.submit(req)
    print(json.dumps(use_fake.children(req.job_name), indent=1)[:1500])
    use_fake.complete_job(req.job_name, {"metrics.json": b'{"accuracy": 0.9}'})
    reg = AzureMLModelRegistry(aml_settings())
    before = len(use_fake.requests)
    mv = reg.register("fashion-mnist-cnn", req.run_id, req.job_name, {"run_id": req.run_id})
    print(mv)
    for r in use_fake.requests[before:]:
        print(r.method, r.tail, r.query, r.status, json.dumps(r.body)[:800] if r.body else "")
    before = len(use_fake.requests)
    reg.mark_champion("fashion-mnist-cnn", req.run_id, None)
    for r in use_fake.requests[before:]:
        print(r.method, r.tail, r.query, r.status, json.dumps(r.body)[:800] if r.body else "")
    print(reg.register("fashion-mnist-cnn", req.run_id, req.job_name, {"run_id": req.run_id}))
