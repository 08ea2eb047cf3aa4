"""terraform/aws applied for real, against a moto server, in both notification modes: a
bucket that already notifies another queue keeps that notification, objects put and
deleted reach the module's queue, and the packaged handler (run from its zip) lands them in
the catalog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from syncd.catalog import open_catalog
from tests.handlers.test_aws_lambda import lambda_event, receive_all
from tests.peers import AWS_TEST_ENV, Peer, free_port, start

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "terraform" / "aws"
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
MIRROR = Path("/opt/tf-plugins")
SERVICES = ("s3", "sqs", "lambda", "iam", "events", "kms", "secretsmanager", "logs", "sts", "ec2")


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A moto server of its own: IAM must know AWS's managed policies the module attaches."""
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    port = free_port()
    peer = start(
        "moto-terraform",
        [binary, "-H", "127.0.0.1", "-p", str(port)],
        port,
        ready_path="/moto-api/",
        env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
        log_dir=tmp_path_factory.mktemp("moto-tf"),
    )
    yield peer
    peer.stop()


def root_module(moto_url: str, package: Path) -> str:
    endpoints = "\n".join(f'    {s} = "{moto_url}"' for s in SERVICES)
    routes = (
        "integrations: [{name: aws, provider: s3}]\n"
        "drivers: [{name: eb, integration: aws, bucket: via-eventbridge},"
        " {name: bn, integration: aws, bucket: via-notification}]\n"
        "datasets: [{name: inbox, drivers: [eb, bn]}]\n"
    )
    return f"""
terraform {{
  required_providers {{
    aws = {{ source = "hashicorp/aws", version = "5.100.0" }}
  }}
}}

provider "aws" {{
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  s3_use_path_style           = true
  endpoints {{
{endpoints}
  }}
}}

variable "other_queue_arn" {{
  type = string
}}

resource "aws_vpc" "net" {{
  cidr_block = "10.0.0.0/16"
}}

resource "aws_subnet" "private" {{
  vpc_id     = aws_vpc.net.id
  cidr_block = "10.0.1.0/24"
}}

resource "aws_security_group" "function" {{
  name   = "syncd-function"
  vpc_id = aws_vpc.net.id
}}

resource "aws_secretsmanager_secret" "catalog" {{
  name                    = "syncd/catalog"
  recovery_window_in_days = 0
}}

module "eventbridge" {{
  source                 = "{MODULE}"
  name                   = "syncd-eb"
  bucket_name            = "via-eventbridge"
  package_path           = "{package}"
  catalog_url_secret_arn = aws_secretsmanager_secret.catalog.arn
  syncd_config_yaml      = {json.dumps(routes)}
  subnet_ids             = [aws_subnet.private.id]
  security_group_ids     = [aws_security_group.function.id]
  vpc_id                 = aws_vpc.net.id
  create_secretsmanager_endpoint = true
}}

module "notification" {{
  source                 = "{MODULE}"
  name                   = "syncd-bn"
  notification_mode      = "bucket_notification"
  bucket_name            = "via-notification"
  package_path           = "{package}"
  catalog_url_secret_arn = aws_secretsmanager_secret.catalog.arn
  syncd_config_yaml      = {json.dumps(routes)}
  subnet_ids             = [aws_subnet.private.id]
  security_group_ids     = [aws_security_group.function.id]
  other_queue_notifications = [{{
    id        = "someone-else"
    queue_arn = var.other_queue_arn
    events    = ["s3:ObjectCreated:*"]
  }}]
}}

output "eventbridge_queue" {{
  value = module.eventbridge.queue_url
}}

output "notification_queue" {{
  value = module.notification.queue_url
}}
"""


def terraform(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["terraform", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            **AWS_TEST_ENV,
            "TF_CLI_CONFIG_FILE": str(workdir / "cli.tfrc"),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
        },
    )


def run_packaged_handler(task: Path, event: dict[str, Any], catalog_url: str) -> Any:
    routes = (
        "integrations: [{name: aws, provider: s3}]\n"
        "drivers: [{name: eb, integration: aws, bucket: via-eventbridge},"
        " {name: bn, integration: aws, bucket: via-notification}]\n"
        "datasets: [{name: inbox, drivers: [eb, bn]}]\n"
    )
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import handlers.aws_lambda as h; "
        "print(json.dumps(h.handler(json.loads(sys.argv[2]), None)))"
    )
    done = subprocess.run(
        [BASE_PYTHON, "-I", "-S", "-c", script, str(task), json.dumps(event)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"SYNCD_CATALOG_URL": catalog_url, "SYNCD_CONFIG_YAML": routes},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_module_applies_keeps_other_notifications_and_delivers(
    aws: Peer, tmp_path: Path
) -> None:
    assert shutil.which("terraform"), "terraform is missing (it comes with the machine image)"
    assert (MIRROR / "registry.terraform.io/hashicorp/aws").is_dir(), (
        f"the AWS provider mirror is missing at {MIRROR} (ENVIRONMENT.md)"
    )
    s3 = boto3.client("s3", endpoint_url=aws.url, region_name="us-east-1", **_keys())
    sqs = boto3.client("sqs", endpoint_url=aws.url, region_name="us-east-1", **_keys())
    other = sqs.create_queue(QueueName="someone-elses-queue")["QueueUrl"]
    other_arn = sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    theirs = {"Id": "someone-else", "QueueArn": other_arn, "Events": ["s3:ObjectCreated:*"]}
    for bucket in ("via-eventbridge", "via-notification"):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [theirs]}
        )
    # The one step eventbridge mode leaves to a person, done the way the README says.
    enabled = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncd",
            "deploy",
            "enable-eventbridge",
            "via-eventbridge",
            "--endpoint-url",
            aws.url,
            "--region",
            "us-east-1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **AWS_TEST_ENV},
    )
    assert enabled.returncode == 0, enabled.stderr

    built = subprocess.run(
        [sys.executable, "-m", "syncd", "deploy", "package", "aws", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    package = tmp_path / "syncd-aws-lambda.zip"

    work = tmp_path / "root"
    work.mkdir()
    (work / "cli.tfrc").write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{MIRROR}"\n'
        '    include = ["registry.terraform.io/hashicorp/*"]\n  }\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    (work / "main.tf").write_text(root_module(aws.url, package))
    (work / "terraform.tfvars").write_text(f'other_queue_arn = "{other_arn}"\n')
    init = terraform(work, "init", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    applied = terraform(work, "apply", "-auto-approve", "-input=false", "-no-color")
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-4000:]
    outputs = json.loads(terraform(work, "output", "-json").stdout)

    # Someone else's notification is still there on both buckets, ours beside it.
    for bucket in ("via-eventbridge", "via-notification"):
        config = s3.get_bucket_notification_configuration(Bucket=bucket)
        assert any(q["QueueArn"] == other_arn for q in config.get("QueueConfigurations", []))
    # (moto does not echo EventBridgeConfiguration; the events arriving below show it is on.)
    mine = s3.get_bucket_notification_configuration(Bucket="via-notification")
    assert len(mine["QueueConfigurations"]) == 2

    for bucket in ("via-eventbridge", "via-notification"):
        s3.put_object(Bucket=bucket, Key="scans/a b.dcm", Body=b"123")
        s3.put_object(Bucket=bucket, Key="scans/gone.dcm", Body=b"x")
        s3.delete_object(Bucket=bucket, Key="scans/gone.dcm")

    with zipfile.ZipFile(package) as bundle:
        bundle.extractall(tmp_path / "task")
    catalog_url = f"sqlite:///{tmp_path / 'catalog.db'}"
    for name, expected in (("eventbridge_queue", 3), ("notification_queue", 4)):
        url = outputs[name]["value"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        messages = receive_all(sqs, url, expected)  # 3 changes (+ S3's test event)
        assert len(messages) >= 3
        answer = run_packaged_handler(tmp_path / "task", lambda_event(arn, messages), catalog_url)
        assert answer == {"batchItemFailures": []}
    catalog = open_catalog(catalog_url)
    items = {(i.driver, i.key): i.deleted for i in catalog.items("inbox", include_deleted=True)}
    catalog.close()
    assert items == {
        ("bn", "scans/a b.dcm"): False,
        ("bn", "scans/gone.dcm"): True,
        ("eb", "scans/a b.dcm"): False,
        ("eb", "scans/gone.dcm"): True,
    }


def _keys() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
    }
