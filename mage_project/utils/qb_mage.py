"""What the qb_* blocks share, in one import: ``from mage_project.utils.qb_mage import ...`` (Mage
puts the project's parent folder on ``sys.path``). Each job lives in its own module:

- ``variables``: the runtime variables, coerced and checked (``run_params``, ``check_sink_config``);
- ``children``: what both dynamic child blocks check first (``child_params``);
- ``receipts``: the pipeline run's stage id and the receipts that make a repeated block run end as
  the first did;
- ``credentials``: the QuickBooks client (Mage Secrets, token rotation, the realm's budget);
- ``logs``: block logs (one ERROR line for a failure) and the engine's events forwarded into them;
- ``run_trigger``: the run's own trigger, settled by the first block so that a run started from
  the UI behaves like one of the shipped triggers;
- ``triggers``: the post-run policy of one-time triggers.

Only qbo_rs's public API is used; records never pass through Python or Mage's block outputs: the
plan block has the engine count and share out the backfill (``QboClient.plan_shares``), each fetch
child has it stage its share on disk (``QboClient.stage_share``) and passes on a small handle, each
export child has it write that stage (``qbo_rs.export_share``) and passes on a small summary.
"""

from mage_project.utils.children import child_params  # noqa: F401
from mage_project.utils.credentials import (  # noqa: F401
    QB_SECRETS,
    REALM_MAX_IN_FLIGHT,
    REALM_REQUESTS_PER_MINUTE,
    TokenRotationRecorder,
    engine_client,
    mage_secret,
    make_client,
    read_credentials,
    realm_budget,
    token_store_path,
    upsert_mage_secret,
)
from mage_project.utils.logs import day_ranges, engine_logs, fail, log, log_windows  # noqa: F401
from mage_project.utils.receipts import keep, kept, run_receipt, stage_run_id  # noqa: F401
from mage_project.utils.run_trigger import settle_run_trigger  # noqa: F401
from mage_project.utils.triggers import disable_once_trigger, read_triggers, triggers_file  # noqa: F401
from mage_project.utils.variables import (  # noqa: F401
    DEFAULT_MAX_CHILDREN,
    ENTITY_BY_PIPELINE,
    MAX_CHILDREN,
    PLURAL,
    RunParams,
    RunVariableError,
    SyncParams,
    check_sink_config,
    default_data_dir,
    default_stage_dir,
    parse_choice,
    parse_instant,
    parse_int,
    parse_labels,
    repo_path,
    run_params,
    sync_params,
    utc_text,
)
