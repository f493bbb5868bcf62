"""Every name the pipeline writes into MLflow, declared once: run tags, model-version tags,
aliases, metrics and the namespaces they live in. Writers and readers (the steps, the registry,
the sweep, the report, lineage, reproduce, scripts/promote) import them from here, so that a
renamed tag is one edit and a reader cannot drift from its writer.

Tags are grouped by prefix; a prefix names who writes them:
``pipeline.*`` the train step's run identity, ``data.*`` / ``feature_set.*`` what data trained
the run, ``code.*`` what code, ``gate.*`` the promotion gate's record (on the run and on the
model version), ``registry.*`` where the run was registered, ``model.*`` the logged model's
files, ``sweep.*`` the hyperparameter search.
"""

from __future__ import annotations

# ---- run identity (the train step's MLflow run) ----------------------------------------------
RUN_TAG = "pipeline.run_id"  # the pipeline run a tracking run belongs to
DATASET_TAG = "pipeline.dataset"
TASK_TAG = "pipeline.task"

# ---- data lineage ---------------------------------------------------------------------------
RAW_SHA256_TAG = "data.raw.sha256"
RAW_ROWS_TAG = "data.raw.rows"
RAW_DVC_MD5_TAG = "data.raw.dvc_md5"
RAW_DVC_PATH_TAG = "data.raw.dvc_path"
PROCESSED_DVC_MD5_TAG = "data.processed.dvc_md5"
PROCESSED_DVC_PATH_TAG = "data.processed.dvc_path"
FEATURE_SET_NAME_TAG = "feature_set.name"
FEATURE_SET_VERSION_TAG = "feature_set.version"
FEATURE_SET_HASH_TAG = "feature_set.content_hash"
DATA_TAG_PREFIXES = ("data.", "feature_set.", "validation.")

# ---- the target-leakage check of the preprocess step (pipeline.leakage), on the train run --------
LEAKAGE_PARAM_PREFIX = "data.leakage"  # the check's settings, logged as params data.leakage.*
LEAKAGE_STATUS_TAG = "validation.leakage.status"  # passed | warned | disabled | skipped
LEAKAGE_WARNED_TAG = "validation.leakage.warned_columns"  # comma-separated; '' when none
LEAKAGE_DOWNGRADED_TAG = "validation.leakage.downgraded"  # column=warn|skip of the contract
LEAKAGE_MAX_SCORE_COLUMN_TAG = "validation.leakage.max_score_column"
LEAKAGE_CHECKED_METRIC = "leakage.checked_columns"
LEAKAGE_MAX_SCORE_METRIC = "leakage.max_score"
LEAKAGE_MAX_DETERMINATION_METRIC = "leakage.max_determination"
LEAKAGE_WARNED_METRIC = "leakage.warned_columns"

# ---- code lineage ---------------------------------------------------------------------------
GIT_COMMIT_TAG = "code.git_commit"
IMAGE_DIGEST_TAG = "code.image_digest"
CODE_TAG_PREFIX = "code."

# ---- training and evaluation ----------------------------------------------------------------
DEVICE_TAG = "train.device"
RANKS_TAG = "train.ranks"  # DistributedDataParallel ranks of the latest attempt (1: one process)
RESUMED_FROM_TAG = "train.resumed_from_epoch"
PRIMARY_METRIC_TAG = "evaluate.primary_metric"
RESOLVED_CONFIG_ARTIFACT = "config/resolved_config.yaml"  # the run's resolved settings, secrets masked
UPSTREAM_STEPS_ARTIFACT = "lineage/upstream_steps.json"  # the data steps' summaries, on the train run
RUN_SETTINGS_FILE = "settings.yaml"  # the same, in the artifact store: runs/<run id>/settings.yaml
TRAIN_PARAM_PREFIX = "train."  # training settings logged as params
OBJECTIVE = "best_val_loss"  # the metric a sweep minimises: validation loss of the best epoch

# ---- the logged model's files (pipeline.modelfiles) -----------------------------------------
MODEL_ID_TAG = "model.id"
FILES_TAG = "model.files"
DIGEST_TAG = "model.files_sha256"
MODEL_FILES_TAGS = (FILES_TAG, DIGEST_TAG)

# ---- the promotion gate and the registry ----------------------------------------------------
CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_TAG_PREFIX = "gate."
DECISION = "gate.decision"
STATE = "gate.state"  # "pending" from the decision's record until its alias move and run tags are done
NOT_APPLIED = "gate.not_applied"
REASON = "gate.reason"
GATE_METRIC = "gate.metric"
GATE_SCORE = "gate.score"
BASELINE_SCORE = "gate.baseline_score"
CHAMPION_VERSION = "gate.champion_version"
CHAMPION_SCORE = "gate.champion_score"
GATE_MARGIN_PARAM = "gate.margin"
GATE_TAGS = (REASON, GATE_METRIC, GATE_SCORE, BASELINE_SCORE, CHAMPION_VERSION, CHAMPION_SCORE, NOT_APPLIED)
REGISTRY_MODEL_TAG = "registry.model"
REGISTRY_VERSION_TAG = "registry.version"

# ---- the step cache (pipeline.cache), on the train run ----------------------------------------
CACHE_REUSED_FROM_PREFIX = "cache.reused_from."  # + step: "run <run id>, step <step>" it reused

# ---- the hyperparameter sweep ---------------------------------------------------------------
ROLE_TAG = "sweep.role"  # parent | trial | best
SWEEP_RUN_TAG = "sweep.run_id"  # never pipeline.run_id: the train step closes RUNNING runs with that tag
STUDY_TAG = "sweep.study"
SWEEP_STATE_TAG = "sweep.state"
BEST_TRIAL_TAG = "sweep.best_trial"
TRIAL_NUMBER_TAG = "sweep.trial_number"
PARENT_TAG = "mlflow.parentRunId"  # what nests a run under another in MLflow
WORKER_SLOT_TAG = "sweep.worker_slot"
RETRY_OF_TRIAL_TAG = "sweep.retry_of_trial"
TRIAL_PARAMS = "sweep.trial_params"  # a param on each trial run, a tag on the best run
PRUNED_BECAUSE_TAG = "sweep.pruned_because"
SWEEP_STORAGE_TAG = "sweep.storage"
SWEEP_SPACE_PARAM = "sweep.space"
SWEEP_OBJECTIVE_PARAM = "sweep.objective"
SWEEP_SAMPLER_PARAM = "sweep.sampler"
SWEEP_PRUNER_PARAM = "sweep.pruner"
SWEEP_MAX_EPOCHS_PARAM = "sweep.max_epochs"
N_TRIALS_TAG = "sweep.n_trials"
SWEEP_PARENT_RUN_TAG = "sweep.parent_run_id"
BEST_TRIAL_RUN_TAG = "sweep.best_trial_run_id"
BEST_RUN_TAG = "sweep.best_run_id"

# ---- what caused a training run (pipeline.settings.TriggerSettings), on the run and its version ----
TRIGGER_TAG_PREFIX = "trigger."
TRIGGER_CAUSE_TAG = "trigger.cause"  # schedule | manual | drift | degradation
TRIGGER_MONITOR_RUN_TAG = "trigger.monitor_run_id"  # the monitoring run that decided the retrain
TRIGGER_DRIFTED_COLUMNS_TAG = "trigger.drifted_columns"  # JSON object: column -> drift score
TRIGGER_WINDOW_TAG = "trigger.window"  # the window the monitor judged (JSON: since, until, rows)

# ---- the monitor (pipeline.monitor): runs in the experiment <experiment>-monitoring -----------
MONITOR_EXPERIMENT_SUFFIX = "-monitoring"
MONITOR_MODEL_TAG = "monitor.model"
MONITOR_VERSION_TAG = "monitor.champion_version"
MONITOR_JUDGED_TAG = "monitor.judged"
MONITOR_DRIFT_TAG = "monitor.drift_detected"
MONITOR_DEGRADED_TAG = "monitor.degraded"
MONITOR_RETRAIN_TAG = "monitor.retrain_triggered"
MONITOR_DRIFTED_COLUMNS_TAG = "monitor.drifted_columns"
MONITOR_STATE_TAG = "monitor.state"  # JSON: the open episodes and the last retrain, carried run to run
MONITOR_REPORT_ARTIFACT = "drift_report.html"
MONITOR_SUMMARY_ARTIFACT = "monitor_summary.json"
DRIFT_SHARE_METRIC = "drift.share"
DRIFTED_COLUMNS_METRIC = "drift.drifted_columns"
DRIFT_SCORE_METRIC_PREFIX = "drift.score."  # + column
PREDICTION_DRIFT_METRIC = "drift.prediction_score"
WINDOW_ROWS_METRIC = "window.rows"
LABELLED_ROWS_METRIC = "window.labelled_rows"
LIVE_METRIC_PREFIX = "live."  # + the primary metric
