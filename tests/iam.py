"""deploy/template.yaml's IAM roles, made real on a moto server that enforces IAM.

* `IamMoto`: a moto server process (tests/iam_moto_server.py) started with
  INITIAL_NO_AUTH_ACTION_COUNT=0, so every request is signature-checked and
  authorized against the caller's policies, resources included; it logs each
  decision (caller's key, action, resource, allowed).
* `Stack`: the template's resources that the roles' policies name (the mirror
  table, the log groups, the secrets bucket), created in moto from the
  template's own properties, and one IAM user per role whose inline policies
  are the role's, read from the template with every `Ref`, `Fn::GetAtt` and
  `Fn::Sub` resolved to what moto made. Code run with a role's key can do
  exactly what the role could do on AWS.
* `used_statements`: which of a role's (statement, action) grants the logged
  calls needed, judged by moto's own policy matcher.
"""

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path

import boto3
import requests
from cfnlint.decode import decode
from moto.iam.access_control import IAMPolicyStatement, PermissionResult

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "template.yaml"
REGION = "us-east-1"
# Roles whose policies the stack turns into users.
ROLES = ("DjangoRole", "AuthorizerRole")


def zappa_stage(stage: str) -> dict:
    settings = json.loads((ROOT / "zappa_settings.json").read_text())
    config = settings[stage]
    if "extends" in config:
        config = {**zappa_stage(config["extends"]), **{k: v for k, v in config.items() if k != "extends"}}
    return config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class IamMoto:
    """The IAM-enforcing moto server process."""

    def __init__(self, work: Path):
        self.log_file = work / "iam-decisions.jsonl"
        self.log_file.touch()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._stderr = open(work / "iam-moto.log", "w")  # noqa: SIM115 - open for the process's life
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.iam_moto_server", str(port), str(self.log_file)],
            cwd=ROOT,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        assert self._process.stdout.readline().strip() == "ready", (work / "iam-moto.log").read_text()

    def stop(self) -> None:
        self._process.stdin.close()
        self._process.wait(timeout=30)
        self._stderr.close()

    def _auth(self, count: str) -> None:
        # moto's own switch for server mode (what its set_initial_no_auth_action_count does).
        requests.post(f"{self.url}/moto-api/reset-auth", data=count.encode(), timeout=10).raise_for_status()

    def reset(self) -> None:
        """Empty moto and stop enforcing, to set up a stack."""
        self._auth("inf")
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        self.log_file.write_text("")

    def enforce(self) -> None:
        self._auth("0")

    def decisions(self, key_id: str) -> list[dict]:
        lines = self.log_file.read_text().splitlines()
        return [entry for entry in map(json.loads, lines) if entry["key"] == key_id]

    def client(self, service: str, key: "AccessKey"):
        return boto3.session.Session().client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=key.id,
            aws_secret_access_key=key.secret,
        )


@dataclass(frozen=True)
class AccessKey:
    id: str
    secret: str

    def environ(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.id, "AWS_SECRET_ACCESS_KEY": self.secret}


def template() -> dict:
    decoded, problems = decode(str(TEMPLATE))
    assert problems == []
    return decoded


def stage_parameters(stage: str = "dev") -> dict[str, str]:
    """The template's parameters as a deploy of this Zappa stage gives them."""
    config = zappa_stage(stage)
    bucket, key = config["remote_env"].removeprefix("s3://").split("/", 1)
    _, sender = parseaddr(config["environment_variables"]["DEFAULT_FROM_EMAIL"])
    return {
        "Stage": stage,
        "SecretsBucketName": bucket,
        "RemoteEnvKey": key,
        "SenderIdentity": sender.split("@", 1)[1],  # the domain, verified in SES
        "JwtIssuer": config["environment_variables"]["JWT_ISSUER"],
        "PinnedProduct": "",
    }


@dataclass
class Stack:
    """The template's resources in moto, and a user per role with the role's policies."""

    moto: IamMoto
    parameters: dict[str, str]
    template: dict = field(default_factory=template)
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    keys: dict[str, AccessKey] = field(default_factory=dict)
    policies: dict[str, list[dict]] = field(default_factory=dict)
    # For proving the proof: {role: {Sid: (actions to take out, actions to put in)}}.
    edits: dict[str, dict[str, tuple[set[str], set[str]]]] = field(default_factory=dict)

    def __post_init__(self):
        self.moto.reset()
        resources = self.template["Resources"]
        admin = self._admin()
        account = self.moto.client("sts", admin).get_caller_identity()["Account"]
        defaults = {name: p.get("Default") for name, p in self.template["Parameters"].items()}
        self.refs |= {k: str(v) for k, v in defaults.items() if v is not None} | self.parameters
        self.refs |= {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": account}
        self.refs["AWS::URLSuffix"] = "amazonaws.com"
        for name in sorted(self._named_in_policies()):
            self._create(name, resources[name], admin)
        self.moto.client("ses", admin).verify_domain_identity(Domain=self.parameters["SenderIdentity"])
        iam = self.moto.client("iam", admin)
        for role in ROLES:
            properties = resources[role]["Properties"]
            assert "ManagedPolicyArns" not in properties, f"{role}: managed policies are not proved here"
            iam.create_user(UserName=role)
            self.policies[role] = []
            for policy in properties["Policies"]:
                document = self.resolve(policy["PolicyDocument"])
                for statement in document["Statement"]:
                    out, add = self.edits.get(role, {}).get(statement.get("Sid"), (set(), set()))
                    if out or add:
                        statement["Action"] = sorted((set(actions(statement)) - out) | add)
                iam.put_user_policy(UserName=role, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
                self.policies[role] += document["Statement"]
            created = iam.create_access_key(UserName=role)["AccessKey"]
            self.keys[role] = AccessKey(created["AccessKeyId"], created["SecretAccessKey"])
        self.admin = admin
        self.moto.enforce()

    def _admin(self) -> AccessKey:
        """A user allowed everything, for setting up and for looking at what the code left behind."""
        bootstrap = AccessKey("AKIAIOSFODNN7EXAMPLE", "unchecked-while-setting-up")
        iam = self.moto.client("iam", bootstrap)
        iam.create_user(UserName="admin")
        everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(everything))
        created = iam.create_access_key(UserName="admin")["AccessKey"]
        return AccessKey(created["AccessKeyId"], created["SecretAccessKey"])

    def _named_in_policies(self) -> set[str]:
        text = json.dumps([self.template["Resources"][role]["Properties"]["Policies"] for role in ROLES])
        named = set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))
        named |= set(re.findall(r'"Fn::GetAtt": \["([A-Za-z0-9]+)"', text))
        named |= {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z0-9.]+)\}", text)}
        return named & set(self.template["Resources"])

    def _create(self, name: str, resource: dict, admin: AccessKey) -> None:
        """Make one resource in moto from the template's properties; note its Ref and Arn."""
        wanted = ("TableName", "KeySchema", "AttributeDefinitions", "BillingMode", "LogGroupName", "BucketName")
        properties = self.resolve({k: v for k, v in resource["Properties"].items() if k in wanted})
        kind = resource["Type"]
        if kind == "AWS::DynamoDB::Table":
            table = self.moto.client("dynamodb", admin).create_table(
                **{k: properties[k] for k in ("TableName", "KeySchema", "AttributeDefinitions", "BillingMode")}
            )["TableDescription"]
            self.refs[name], self.attributes[name, "Arn"] = table["TableName"], table["TableArn"]
        elif kind == "AWS::Logs::LogGroup":
            logs = self.moto.client("logs", admin)
            logs.create_log_group(logGroupName=properties["LogGroupName"])
            found = logs.describe_log_groups(logGroupNamePrefix=properties["LogGroupName"])["logGroups"]
            (group,) = [g for g in found if g["logGroupName"] == properties["LogGroupName"]]
            self.refs[name], self.attributes[name, "Arn"] = group["logGroupName"], group["arn"]
        elif kind == "AWS::S3::Bucket":
            self.moto.client("s3", admin).create_bucket(Bucket=properties["BucketName"])
            self.refs[name] = properties["BucketName"]
            self.attributes[name, "Arn"] = f"arn:aws:s3:::{properties['BucketName']}"
        else:
            raise AssertionError(f"a policy names {name} ({kind}): teach tests/iam.py to make one in moto")

    def create_mirror_table(self) -> None:
        """The mirror table again, empty (as after a restore into a new table)."""
        dynamodb = self.moto.client("dynamodb", self.admin)
        dynamodb.delete_table(TableName=self.refs["MirrorTable"])
        self._create("MirrorTable", self.template["Resources"]["MirrorTable"], self.admin)

    def resolve(self, value):
        """`value` with every intrinsic function the policies use evaluated against this stack."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            return self.refs[value["Ref"]]
        if set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            name, attribute = target.split(".", 1) if isinstance(target, str) else target
            return self.attributes[name, attribute]
        if set(value) == {"Fn::Sub"}:
            text, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]

            def substitute(match: re.Match) -> str:
                name = match[1]
                if name in variables:
                    return self.resolve(variables[name])
                if "." in name and not name.startswith("AWS::"):
                    return self.attributes[tuple(name.split(".", 1))]
                return self.refs[name]

            return re.sub(r"\$\{([^}]+)\}", substitute, text)
        if any(k.startswith("Fn::") for k in value):
            raise AssertionError(f"tests/iam.py cannot evaluate {value}")
        return {k: self.resolve(v) for k, v in value.items()}


def actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else list(statement["Action"])


def service(statement: dict) -> str:
    """The one service a statement's actions belong to (a statement mixing services fails here)."""
    (name,) = {action.split(":")[0] for action in actions(statement)}
    return name


def grants(statements: list[dict]) -> set[tuple[str, str]]:
    """(Sid, action) of every Allow in these statements."""
    assert all(s["Effect"] == "Allow" and "Sid" in s for s in statements)
    return {(s["Sid"], action) for s in statements for action in actions(s)}


def used_statements(statements: list[dict], decisions: list[dict]) -> set[tuple[str, str]]:
    """(Sid, action) of the grants that allowed at least one of these calls."""
    used = set()
    for decision in decisions:
        for statement in statements:
            for action in actions(statement):  # which of the statement's actions (or patterns) allowed it
                one = IAMPolicyStatement({**statement, "Action": action})
                if one.is_action_permitted(decision["action"], decision["resource"]) == PermissionResult.PERMITTED:
                    used.add((statement["Sid"], action))
    return used
