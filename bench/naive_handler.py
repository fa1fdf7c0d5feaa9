"""The baseline: an inference handler written the way Lambda + EFS tutorials write it.

Everything happens at module import, on every cold start: the EFS lib/ goes on
sys.path, torch and torchvision are imported, and the whole pickled ``nn.Module``
is unpickled with joblib. Each request decodes the image at full size and runs
torchvision's transforms. Only the timing fields are added, so the benchmark can
break the cold start down; nothing else is tuned.
"""

import base64
import io
import json
import os
import sys
import time

_t0 = time.perf_counter()
sys.path.insert(0, os.environ.get("LIB_PATH", "/mnt/efs/lib"))

import joblib  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402, F401
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402

_t1 = time.perf_counter()
MODEL = joblib.load(os.environ.get("MODEL_PATH", "/mnt/efs/model.joblib"))
MODEL.eval()
_t2 = time.perf_counter()

if os.environ.get("MODEL_INPUT", "imagenet") == "digits":
    TRANSFORM = transforms.Compose(
        [transforms.Grayscale(), transforms.Resize((8, 8)), transforms.ToTensor()]
    )
else:
    TRANSFORM = transforms.Compose(
        [
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
INIT_MS = {"imports": (_t1 - _t0) * 1000, "model_load": (_t2 - _t1) * 1000}
_cold = True


def handle(event, context):
    """Classify the image in the request body; answers like an API Gateway proxy integration."""
    global _cold
    body = event.get("body") or ""
    data = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("latin-1")
    image = Image.open(io.BytesIO(data)).convert("RGB")
    batch = TRANSFORM(image).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(MODEL(batch), dim=1)[0]
    top = torch.topk(probabilities, 5)
    timing = dict(INIT_MS) if _cold else {}
    _cold = False
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(
            {
                "predictions": [
                    {"index": int(i), "score": float(s)}
                    for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                ],
                "timing_ms": timing,
            }
        ),
    }
