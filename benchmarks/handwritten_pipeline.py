"""The hand-written baseline of benchmarks/pipeline_overhead.py: what a data scientist would write
to do the pipeline's work without the project, with the same libraries.

    python benchmarks/handwritten_pipeline.py <config.yaml> <work folder>

Reads the source of a pipeline configuration (its data.columns contract, its train settings),
validates it with Great Expectations, preprocesses it, writes the rows to SQLite, trains the
same kind of network and logs to MLflow. Not a test and not part of the pipeline.
"""

# A linear script, as such scripts are written: each library is imported where its stage starts.
# ruff: noqa: E402

import json
import sys

import numpy as np
import pandas as pd
import yaml

with open(sys.argv[1]) as handle:
    config = yaml.safe_load(handle)
work = sys.argv[2]
data, train_cfg = config["data"], config["train"]
target = data["target"]
frame = pd.read_csv(data["source"]["uri"])

import great_expectations as gx

context = gx.get_context(mode="ephemeral")
batch = (
    context.data_sources.add_pandas("bench")
    .add_dataframe_asset("rows")
    .add_batch_definition_whole_dataframe("all")
)
suite = context.suites.add(gx.ExpectationSuite(name="contract"))
E = gx.expectations
suite.add_expectation(E.ExpectTableRowCountToBeBetween(min_value=data["min_rows"]))
for name, spec in data["columns"].items():
    suite.add_expectation(E.ExpectColumnToExist(column=name))
    suite.add_expectation(
        E.ExpectColumnValuesToNotBeNull(column=name, mostly=1 - spec.get("max_null_fraction", 0.0))
    )
    if spec["type"] in ("float", "int"):
        suite.add_expectation(E.ExpectColumnValuesToBeInTypeList(column=name, type_list=["int64", "float64"]))
        suite.add_expectation(
            E.ExpectColumnValuesToBeBetween(column=name, min_value=spec["min"], max_value=spec["max"])
        )
    else:
        suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=name, value_set=spec["allowed"]))
validation = context.validation_definitions.add(gx.ValidationDefinition(name="raw", data=batch, suite=suite))
result = validation.run(batch_parameters={"dataframe": frame})
assert result.success, "the data must pass"

from sklearn.model_selection import train_test_split

features = [c for c in data["columns"] if c != target]
numeric = [c for c in features if data["columns"][c]["type"] != "category"]
categorical = [c for c in features if data["columns"][c]["type"] == "category"]
frame = frame[frame[target].notna()].drop_duplicates(subset=[*features, target]).reset_index(drop=True)
index = np.arange(len(frame))
rest, test = train_test_split(index, test_size=0.2, random_state=42, stratify=frame[target])
train, val = train_test_split(rest, test_size=0.25, random_state=42, stratify=frame[target].iloc[rest])
fit = frame.iloc[train]
medians = fit[numeric].median()
filled = frame[numeric].fillna(medians)
mean, std = filled.iloc[train].mean(), filled.iloc[train].std(ddof=0).replace(0, 1)
x_num = ((filled - mean) / std).to_numpy(np.float32)
vocab = {c: {v: i + 2 for i, v in enumerate(sorted(fit[c].dropna().unique()))} for c in categorical}
x_cat = np.stack([frame[c].map(vocab[c]).fillna(0).to_numpy(np.int64) for c in categorical], axis=1)
classes = sorted(fit[target].unique())
y = frame[target].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
split = np.empty(len(frame), dtype=object)
split[train] = "train"
split[val] = "val"
split[test] = "test"

import sqlalchemy as sa

processed = pd.DataFrame(x_num, columns=[f"num__{c}" for c in numeric])
for j, c in enumerate(categorical):
    processed[f"cat__{c}"] = x_cat[:, j]
processed["target"] = y
processed["split"] = split
processed.to_sql("features", sa.create_engine(f"sqlite:///{work}/features.db"), index=False, chunksize=10_000)

import torch
from torch import nn

torch.manual_seed(42)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embeddings = nn.ModuleList(
            nn.Embedding(len(vocab[c]) + 2, min(16, (len(vocab[c]) + 3) // 2)) for c in categorical
        )
        width = len(numeric) + sum(e.embedding_dim for e in self.embeddings)
        layers = []
        for size in train_cfg["hidden_sizes"]:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(0.1)]
            width = size
        self.body = nn.Sequential(*layers, nn.Linear(width, len(classes)))

    def forward(self, xn, xc):
        return self.body(torch.cat([xn, *(e(xc[:, j]) for j, e in enumerate(self.embeddings))], dim=1))


net = Net()
optimizer = torch.optim.AdamW(net.parameters(), lr=train_cfg["learning_rate"], weight_decay=1e-4)
loss_fn = nn.CrossEntropyLoss()
tn, tc, ty = (torch.from_numpy(a[train]) for a in (x_num, x_cat, y))
vn, vc, vy = (torch.from_numpy(a[val]) for a in (x_num, x_cat, y))

import mlflow

mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
mlflow.set_experiment("bench")
with mlflow.start_run():
    mlflow.log_params({f"train.{k}": v for k, v in train_cfg.items()})
    generator = torch.Generator().manual_seed(42)
    for epoch in range(1, train_cfg["max_epochs"] + 1):
        net.train()
        order = torch.randperm(len(ty), generator=generator)
        running = 0.0
        for start in range(0, len(order), train_cfg["batch_size"]):
            batch_rows = order[start : start + train_cfg["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(net(tn[batch_rows], tc[batch_rows]), ty[batch_rows])
            loss.backward()
            optimizer.step()
            running += float(loss) * len(batch_rows)
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net(vn, vc), vy))
        mlflow.log_metrics({"train_loss": running / len(ty), "val_loss": val_loss}, step=epoch)
    torch.save(net.state_dict(), f"{work}/model.pt")
    mlflow.log_artifact(f"{work}/model.pt")
print(json.dumps({"rows": len(frame), "val_loss": val_loss}))
