"""Deploy template.yaml to an emulator's CloudFormation, then check each resource through its own API.

Usage: python infra/deploy_emulator.py --endpoint URL --stack NAME [--param Key=Value ...]
                                       [--template PATH] [--delete]

Made for moto in server mode (infra/emulator.sh), whose CloudFormation says CREATE_COMPLETE while it
skips whole resource types and ignores some properties, so a green stack proves little. This script
translates the SAM template (infra/translate_template.py), creates the stack, and then asks each
service what it holds, property by property, against the translated template with the stack's
parameters, conditions and physical ids resolved. Something the emulator is known to drop is
reported as "not kept by the emulator" once its API confirms the absence, never as passed; any
other difference is a problem. infra/EMULATOR.md says what this can and cannot verify.

Before deploying, two changes are made to the translated template, for the emulator only:
- each function's code is a tiny placeholder zip in a bucket this script creates; nothing runs it;
- a FIFO queue without QueueName gets one in CloudFormation's form, <stack>-<id>-<suffix>.fifo:
  moto generates <stack>-<id>-<suffix> without ".fifo", and SQS then refuses to create the queue.

Prints a JSON report on stdout and one line per resource on stderr. Exit 0: no problem; 1: a
resource differs from the template; 2: the deploy failed. Region us-east-1; credentials from the
environment (test/test when unset).
"""

import argparse
import ast
import io
import json
import os
import random
import re
import string
import sys
import time
import zipfile
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError

sys.dont_write_bytecode = True  # no __pycache__ next to translate_template.py
sys.path.insert(0, str(Path(__file__).resolve().parent))
from translate_template import translate  # noqa: E402

REGION = "us-east-1"
MISSING, UNRESOLVED, NOVALUE = object(), object(), object()
# What moto 5.2.5 shows for properties its CloudFormation never reads (the models'
# create_from_cloudformation_json). Seeing this value means "not kept", not a problem.
DROPPED = {
    "AWS::S3::Bucket": dict.fromkeys(["VersioningConfiguration", "LifecycleConfiguration",
                                      "OwnershipControls", "PublicAccessBlockConfiguration",
                                      "NotificationConfiguration"]),
    "AWS::Lambda::Function": {"TracingConfig": {"Mode": "PassThrough"}, "Architectures": ["x86_64"],
                              "LoggingConfig": None, "Tags": []},
}
# Declared properties not compared, and why. Every other one is compared with what the API shows.
UNCOMPARED = {("AWS::Lambda::Function", "Code"): "this script deploys a placeholder instead"}
# Compared whole (extra keys count); other objects only on the keys the template sets.
EXACT = {"AssumeRolePolicyDocument", "Policies", "Environment", "DashboardBody"}
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


class Unresolved(Exception):
    """A value this script does not resolve: an intrinsic it does not know, or no physical id."""


def api(call, *absent, **kwargs):
    """Calls the API; returns None when it answers with one of the `absent` error codes."""
    try:
        return call(**kwargs)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in absent:
            return None
        raise


def parse_doc(doc):
    """A policy document as a dict; moto returns inline role policies as a Python literal."""
    if not isinstance(doc, str):
        return doc
    try:
        return json.loads(doc)
    except ValueError:
        return ast.literal_eval(doc)


FN = {  # the intrinsic functions this script resolves
    "Ref": lambda st, a: st.ref(a),
    "Fn::GetAtt": lambda st, a: st.attr(*(a.split(".", 1) if isinstance(a, str) else a)),
    "Fn::Sub": lambda st, a: st.sub(*(a if isinstance(a, list) else [a, {}])),
    "Fn::If": lambda st, a: st.resolve(a[1] if st.condition(a[0]) else a[2]),
    "Fn::Join": lambda st, a: st.resolve(a[0]).join(str(x) for x in st.resolve(a[1])),
    "Fn::Select": lambda st, a: st.resolve(a[1])[int(st.resolve(a[0]))],
    "Fn::Split": lambda st, a: st.resolve(a[1]).split(st.resolve(a[0])),
    "Fn::Equals": lambda st, a: str(st.resolve(a[0])) == str(st.resolve(a[1])),
    "Fn::Not": lambda st, a: not st.resolve(a[0]),
    "Fn::And": lambda st, a: all(st.resolve(x) for x in a),
    "Fn::Or": lambda st, a: any(st.resolve(x) for x in a),
    "Condition": lambda st, a: st.condition(a),
}


class Stack:
    """The deployed stack: clients, parameters, conditions, physical ids, and a resolver."""

    def __init__(self, session, endpoint, name, template, params):
        self.aws = lambda service: session.client(service, endpoint_url=endpoint)
        self.name, self.template = name, template
        self.params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
        self.params.update(params)
        self.account = self.aws("sts").get_caller_identity()["Account"]
        self.physical, self.types, self.cache, self.stack_id = {}, {}, {}, None
        self.outputs, self.roles = {}, {}

    def condition(self, name):
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, v):
        if isinstance(v, list):
            return [x for x in (self.resolve(x) for x in v) if x is not NOVALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1 and next(iter(v)) in FN:
            return FN[next(iter(v))](self, next(iter(v.values())))
        if any(k.startswith("Fn::") for k in v):
            raise Unresolved(next(iter(v)))
        return {k: x for k, x in ((k, self.resolve(x)) for k, x in v.items()) if x is not NOVALUE}

    def ref(self, name):
        pseudo = {"AWS::Region": REGION, "AWS::AccountId": self.account, "AWS::Partition": "aws",
                  "AWS::StackName": self.name, "AWS::StackId": self.stack_id, "AWS::NoValue": NOVALUE}
        value = pseudo[name] if name in pseudo else self.params.get(name, self.physical.get(name))
        if value is None:
            raise Unresolved(f"Ref {name}")
        return value

    def sub(self, text, variables):
        values = {k: self.resolve(x) for k, x in variables.items()}

        def one(match):
            key = match.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            return str(values[key] if key in values else self.attr(*key.split(".", 1)) if "." in key
                       else self.ref(key))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def attr(self, logical, name):
        """Fn::GetAtt as AWS documents it, read from the emulator's APIs."""
        kind, phys = self.types.get(logical), self.physical.get(logical)
        look = {
            ("AWS::S3::Bucket", "Arn"): lambda: f"arn:aws:s3:::{phys}",
            ("AWS::SQS::Queue", "Arn"): lambda: self.aws("sqs").get_queue_attributes(
                QueueUrl=phys, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"],
            ("AWS::SQS::Queue", "QueueName"): lambda: phys.rsplit("/", 1)[-1],
            ("AWS::IAM::Role", "Arn"): lambda: self.aws("iam").get_role(RoleName=phys)["Role"]["Arn"],
            ("AWS::Lambda::Function", "Arn"): lambda: self.aws("lambda").get_function_configuration(
                FunctionName=phys)["FunctionArn"],
            # On AWS a log group's Arn ends in ":*", like DescribeLogGroups' "arn".
            ("AWS::Logs::LogGroup", "Arn"): lambda: f"arn:aws:logs:{REGION}:{self.account}:log-group:{phys}:*",
            ("AWS::Events::Rule", "Arn"): lambda: self.aws("events").describe_rule(Name=phys)["Arn"],
            ("AWS::SNS::Topic", "TopicArn"): lambda: phys,
        }.get((kind, name))
        if phys is None or look is None:
            raise Unresolved(f"GetAtt {logical}.{name}")
        if (logical, name) not in self.cache:
            self.cache[logical, name] = look()
        return self.cache[logical, name]

    def props(self, value):
        """Resolves properties key by key; what it cannot resolve becomes UNRESOLVED."""
        try:
            return self.resolve(value)
        except (Unresolved, KeyError, IndexError, TypeError, ValueError):
            if isinstance(value, dict) and not any(k in FN or k.startswith("Fn::") for k in value):
                return {k: self.props(x) for k, x in value.items()}
            return UNRESOLVED


def scalar(v):
    """Numbers compare as numbers and booleans as "true"/"false": the APIs mix strings in."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)) or (isinstance(v, str) and NUMBER.match(v)):
        return str(float(v)) if "." in str(v) else str(int(v))
    return v


def contains(value, marker):
    if isinstance(value, dict):
        return any(contains(v, marker) for v in value.values())
    return value is marker or isinstance(value, list) and any(contains(v, marker) for v in value)


def brief(value, limit=300):
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Result:
    """What the check of one resource found."""

    def __init__(self, logical, kind, physical, props):
        self.logical, self.kind, self.physical, self.props = logical, kind, physical, props
        self.result, self.checks, self.problems, self.notes = "checked", 0, [], []
        self.not_kept, self.unresolved, self.uncompared = [], [], []

    def ok(self, what, fact):
        self.checks += 1
        if not fact:
            self.problems.append(what)

    def eq(self, what, want, got, lost=MISSING, exact=False):
        """Compares a declared value with the emulator's; `lost` is what the emulator shows for a
        property it is known to drop."""
        if want is UNRESOLVED or contains(want, UNRESOLVED):
            self.unresolved.append(what)
        elif self.same(want, got, exact):
            self.checks += 1
        elif lost is not MISSING and (got is None or self.same(lost, got, True)):
            self.not_kept.append(what)
        else:
            self.checks += 1
            path, want, got = self.diff(want, got, exact)
            self.problems.append(f"{what}{path}: template {brief(want)}, emulator {brief(got)}")

    def same(self, want, got, exact):
        if isinstance(want, dict):
            return isinstance(got, dict) and (not exact or set(want) == set(got)) and all(
                self.same(v, got.get(k), exact) for k, v in want.items())
        if isinstance(want, list):
            if isinstance(got, list) and None in got and None not in want:
                self.note("the emulator keeps AWS::NoValue in a list as null")
                got = [x for x in got if x is not None]
            return isinstance(got, list) and len(got) == len(want) and all(
                self.same(a, b, exact) for a, b in zip(want, got))
        if isinstance(want, str) and isinstance(got, str) and ":log-group:" in want and want == got + ":*":
            self.note("the emulator's GetAtt of a log group's Arn lacks AWS's trailing ':*'")
            return True
        return scalar(want) == scalar(got)

    def diff(self, want, got, exact):
        """The first place where two values differ: (path, declared part, emulator's part)."""
        if isinstance(want, dict) and isinstance(got, dict):
            for key in list(want) + [k for k in got if exact and k not in want]:
                if not self.same(want.get(key), got.get(key), exact):
                    path, a, b = self.diff(want.get(key), got.get(key), exact)
                    return f".{key}{path}", a, b
        if isinstance(want, list) and isinstance(got, list):
            got = [x for x in got if x is not None] if None not in want else got
            mine = {x.get("Sid"): x for x in want if isinstance(x, dict) and x.get("Sid")}
            theirs = {x.get("Sid"): x for x in got if isinstance(x, dict) and x.get("Sid")}
            if len(want) != len(got) and len(mine) == len(want) and len(theirs) == len(got):
                sid = next(k for k in list(mine) + list(theirs) if k not in mine or k not in theirs)
                return f"[Sid={sid}]", mine.get(sid), theirs.get(sid)
            for i, (a, b) in enumerate(zip(want, got) if len(want) == len(got) else []):
                if not self.same(a, b, exact):
                    path, a, b = self.diff(a, b, exact)
                    return f"[{i}]{path}", a, b
        return "", want, got

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)


# ------------------------------------------------------------------------------------------------
# What the emulator holds, per resource type, in the template's property names and shapes.
# ------------------------------------------------------------------------------------------------

def fetch_bucket(st, r, p):
    s3, name = st.aws("s3"), r.physical
    r.ok("bucket exists", api(s3.head_bucket, "404", "NoSuchBucket", Bucket=name) is not None)
    enc = api(s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError", Bucket=name)
    version = s3.get_bucket_versioning(Bucket=name).get("Status")
    life = api(s3.get_bucket_lifecycle_configuration, "NoSuchLifecycleConfiguration", Bucket=name)
    pab = api(s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration", Bucket=name)
    own = api(s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError", Bucket=name)
    queues = s3.get_bucket_notification_configuration(Bucket=name).get("QueueConfigurations", [])
    rules = [{k: v for k, v in {
        "Id": x.get("ID"), "Status": x["Status"],
        "Prefix": x.get("Prefix", (x.get("Filter") or {}).get("Prefix")),
        "Transitions": [{"StorageClass": t["StorageClass"], "TransitionInDays": t.get("Days")}
                        for t in x.get("Transitions", [])] or None,
        "ExpirationInDays": (x.get("Expiration") or {}).get("Days"),
        "NoncurrentVersionExpiration": x.get("NoncurrentVersionExpiration"),
        "AbortIncompleteMultipartUpload": x.get("AbortIncompleteMultipartUpload")}.items() if v is not None}
        for x in (life or {}).get("Rules", [])]
    return {
        "BucketName": name,
        "BucketEncryption": enc and {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": x["ApplyServerSideEncryptionByDefault"]}
            for x in enc["ServerSideEncryptionConfiguration"]["Rules"]]},
        "VersioningConfiguration": version and {"Status": version},
        "LifecycleConfiguration": life and {"Rules": rules},
        "PublicAccessBlockConfiguration": pab and pab["PublicAccessBlockConfiguration"],
        "OwnershipControls": own and own["OwnershipControls"],
        "NotificationConfiguration": {"QueueConfigurations": [
            {"Event": event, "Queue": q["QueueArn"], "Filter": {"S3Key": {"Rules": [
                {"Name": f["Name"].lower(), "Value": f["Value"]}
                for f in q.get("Filter", {}).get("Key", {}).get("FilterRules", [])]}}}
            for q in queues for event in q["Events"]]} if queues else None,
    }


def fetch_queue(st, r, p):
    attrs = st.aws("sqs").get_queue_attributes(QueueUrl=r.physical, AttributeNames=["All"])["Attributes"]
    if p.get("FifoQueue") is True and "QueueName" not in p:
        r.note("QueueName set by this script (moto would name it without the .fifo suffix)")
    return {**attrs, "QueueName": r.physical.rsplit("/", 1)[-1],
            "RedrivePolicy": json.loads(attrs["RedrivePolicy"]) if "RedrivePolicy" in attrs else None}


def fetch_role(st, r, p):
    iam = st.aws("iam")
    role = iam.get_role(RoleName=r.physical)["Role"]
    names = iam.list_role_policies(RoleName=r.physical)["PolicyNames"]
    raw = {n: iam.get_role_policy(RoleName=r.physical, PolicyName=n)["PolicyDocument"] for n in names}
    if any(isinstance(doc, str) for doc in raw.values()):
        r.note("the emulator returns inline role policies as a Python literal, not JSON")
    stored = {n: parse_doc(doc) for n, doc in raw.items()}
    st.roles[r.logical] = {"name": role["RoleName"], "arn": role["Arn"], "policies": stored}
    order = [x.get("PolicyName") for x in p.get("Policies", []) if isinstance(x, dict)]
    names.sort(key=lambda n: order.index(n) if n in order else len(order))
    return {"RoleName": role["RoleName"], "Path": role["Path"], "Description": role.get("Description"),
            "AssumeRolePolicyDocument": parse_doc(role["AssumeRolePolicyDocument"]),
            "MaxSessionDuration": role.get("MaxSessionDuration"),
            "Policies": [{"PolicyName": n, "PolicyDocument": stored[n]} for n in names]}


def fetch_function(st, r, p):
    lam = st.aws("lambda")
    got = lam.get_function_configuration(FunctionName=r.physical)
    concurrency = lam.get_function_concurrency(FunctionName=r.physical)
    tags = lam.list_tags(Resource=got["FunctionArn"]).get("Tags", {})
    order = [t.get("Key") for t in p.get("Tags", []) if isinstance(t, dict)]
    return {**got, "Environment": got.get("Environment", {"Variables": {}}),
            "LoggingConfig": got.get("LoggingConfig"),
            "Tags": sorted(({"Key": k, "Value": v} for k, v in tags.items()),
                           key=lambda t: order.index(t["Key"]) if t["Key"] in order else len(order)),
            "ReservedConcurrentExecutions": concurrency.get("ReservedConcurrentExecutions")}


def fetch_mapping(st, r, p):
    got = st.aws("lambda").get_event_source_mapping(UUID=r.physical)
    arn = got["FunctionArn"]
    name = arn if str(p.get("FunctionName")).startswith("arn:") else arn.split(":")[-1]
    return {**got, "FunctionName": name, "Enabled": got.get("State") == "Enabled"}


def fetch_log_group(st, r, p):
    groups = st.aws("logs").describe_log_groups(logGroupNamePrefix=r.physical)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == r.physical), None)
    r.ok("log group exists", group is not None)
    group = group or {}
    return {"LogGroupName": group.get("logGroupName"), "RetentionInDays": group.get("retentionInDays"),
            "KmsKeyId": group.get("kmsKeyId")}


def fetch_topic(st, r, p):
    attrs = st.aws("sns").get_topic_attributes(TopicArn=r.physical)["Attributes"]
    return {**attrs, "TopicName": r.physical.rsplit(":", 1)[-1]}


def fetch_dashboard(st, r, p):
    body = st.aws("cloudwatch").get_dashboard(DashboardName=r.physical)["DashboardBody"]
    for who, text in (("the template's", p.get("DashboardBody")), ("the emulator's", body)):
        if isinstance(text, str):
            try:
                parsed = json.loads(text)
                r.ok(f"{who} DashboardBody has widgets", bool(parsed.get("widgets")))
            except ValueError as err:
                r.ok(f"{who} DashboardBody is not JSON: {err}", False)
                return {"DashboardName": r.physical}
            if who == "the template's":
                p["DashboardBody"] = parsed
    return {"DashboardName": r.physical, "DashboardBody": json.loads(body)}


def fetch_rule(st, r, p):
    events = st.aws("events")
    rule = events.describe_rule(Name=r.physical)
    return {**rule, "Targets": events.list_targets_by_rule(Rule=r.physical)["Targets"]}


def fetch_permission(st, r, p):
    got = api(st.aws("lambda").get_policy, "ResourceNotFoundException", FunctionName=p.get("FunctionName"))
    for s in json.loads(got["Policy"])["Statement"] if got else []:
        principal = s.get("Principal")
        if p.get("Principal") == (principal.get("Service") if isinstance(principal, dict) else principal):
            source = (s.get("Condition") or {}).get("ArnLike", {})
            fn = s.get("Resource", "")
            return {"Action": s.get("Action"), "Principal": p.get("Principal"),
                    "FunctionName": fn if str(p.get("FunctionName")).startswith("arn:") else fn.split(":")[-1],
                    "SourceArn": next(iter(source.values()), None)}
    r.ok(f"the function's resource policy allows {p.get('Principal')}", False)
    return {}


FETCH = {
    "AWS::S3::Bucket": fetch_bucket, "AWS::SQS::Queue": fetch_queue, "AWS::IAM::Role": fetch_role,
    "AWS::Lambda::Function": fetch_function, "AWS::Lambda::EventSourceMapping": fetch_mapping,
    "AWS::Logs::LogGroup": fetch_log_group, "AWS::SNS::Topic": fetch_topic,
    "AWS::CloudWatch::Dashboard": fetch_dashboard, "AWS::Events::Rule": fetch_rule,
    "AWS::Lambda::Permission": fetch_permission,
}

# Types moto's CloudFormation has no model for, so it skips them: each finds the resource anyway
# (by the name CloudFormation would give it, or on the resource it attaches to); [] as expected.
NOT_KEPT = {
    "AWS::CloudWatch::Alarm": lambda st, logical, p: [a["AlarmName"] for a in st.aws(
        "cloudwatch").describe_alarms(AlarmNamePrefix=p["AlarmName"] if isinstance(
            p.get("AlarmName"), str) else f"{st.name}-{logical}-")["MetricAlarms"]],
    "AWS::SQS::QueuePolicy": lambda st, logical, p: [q for q in p.get("Queues", []) if "Policy" in st.aws(
        "sqs").get_queue_attributes(QueueUrl=q, AttributeNames=["Policy"]).get("Attributes", {})],
    "AWS::S3::BucketPolicy": lambda st, logical, p: [p["Bucket"]] if api(
        st.aws("s3").get_bucket_policy, "NoSuchBucketPolicy", Bucket=p.get("Bucket")) else [],
    "AWS::SNS::Subscription": lambda st, logical, p: [s["SubscriptionArn"] for s in st.aws(
        "sns").list_subscriptions_by_topic(TopicArn=p.get("TopicArn"))["Subscriptions"]
        if s.get("Endpoint") == p.get("Endpoint")],
}


def check(st, declared, listed):
    results = []
    for logical, res in declared["Resources"].items():
        kind, cond = res["Type"], res.get("Condition")
        r = Result(logical, kind, listed.get(logical), st.props(res.get("Properties", {})))
        if cond and not st.condition(cond):
            if logical in listed:
                results.append(r)
                r.problems.append(f"created although its condition {cond} is false")
            continue
        results.append(r)
        try:
            if logical not in listed:
                found = NOT_KEPT[kind](st, logical, r.props) if kind in NOT_KEPT else None
                if found is None:
                    r.problems.append("declared, but the stack does not list it")
                elif found:
                    r.problems.append(f"the stack does not list it, yet it exists: {found}")
                else:
                    r.result = "not kept by the emulator"
                    r.note("its CloudFormation skips this type; the API confirms nothing was created")
            elif kind not in FETCH:
                r.result = "not checked"
                r.note("this script has no check for the type")
            else:
                got = FETCH[kind](st, r, r.props)
                for key, want in r.props.items():
                    if (kind, key) in UNCOMPARED:
                        r.uncompared.append(f"{key} ({UNCOMPARED[kind, key]})")
                    else:
                        r.eq(key, want, got.get(key), DROPPED.get(kind, {}).get(key, MISSING), key in EXACT)
        except (BotoCoreError, ClientError, KeyError, TypeError, ValueError) as err:
            r.problems.append(f"check failed: {type(err).__name__}: {err}")
        for label, keys in (("not kept by the emulator", r.not_kept), ("not resolved here", r.unresolved),
                            ("not compared", r.uncompared)):
            if keys:
                r.note(f"{label}: {', '.join(keys)}")
    return results


# ------------------------------------------------------------------------------------------------
# Deploy, report, delete
# ------------------------------------------------------------------------------------------------

def for_emulator(template, stack, bucket):
    """The translated template as deployed: placeholder code, and FIFO queues named (see above)."""
    deployed = json.loads(json.dumps(template))
    for logical, res in deployed["Resources"].items():
        props = res.setdefault("Properties", {})
        if res["Type"] == "AWS::Lambda::Function":
            props["Code"] = {"S3Bucket": bucket, "S3Key": "placeholder.zip"}
        if res["Type"] == "AWS::SQS::Queue" and props.get("FifoQueue") is True and "QueueName" not in props:
            suffix = "".join(random.choices(string.ascii_uppercase + string.digits, k=12))
            props["QueueName"] = f"{stack}-{logical}"[:62] + f"-{suffix}.fifo"
    return deployed


def placeholder_zip():
    """A zip whose `bootstrap` only fails. Nothing runs it: the emulator only stores it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(zipfile.ZipInfo("bootstrap"),
                   "#!/bin/sh\necho 'placeholder, not the built function' >&2\nexit 1\n")
    return buf.getvalue()


def create(st, cfn, body, params):
    """Creates the stack; returns None, or the reasons why it failed."""
    try:
        cfn.create_stack(StackName=st.name, TemplateBody=body, Parameters=params,
                         Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
        while True:
            stack = cfn.describe_stacks(StackName=st.name)["Stacks"][0]
            if not stack["StackStatus"].endswith("_IN_PROGRESS"):
                break
            time.sleep(2)
        if stack["StackStatus"] == "CREATE_COMPLETE":
            st.stack_id = stack["StackId"]
            st.outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
            return None
        reasons = [f"status {stack['StackStatus']}"]
    except ClientError as err:  # moto creates synchronously and fails the call itself
        reasons = [f"CreateStack: {err}"]
    events = api(cfn.describe_stack_events, "ValidationError", StackName=st.name) or {}
    return reasons + [f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}"
                      for e in events.get("StackEvents", []) if "FAILED" in e.get("ResourceStatus", "")]


def report(stack, st, results):
    """The JSON report on stdout, one line per resource on stderr."""
    count = lambda what: sum(r.result == what for r in results)  # noqa: E731
    summary = {"checked": count("checked"), "not_kept": count("not kept by the emulator"),
               "not_checked": count("not checked"), "problems": sum(len(r.problems) for r in results)}
    print(json.dumps({
        "stack": stack, "status": "CREATE_COMPLETE", "outputs": st.outputs,
        "resources": [{"logical": r.logical, "type": r.kind, "physical": r.physical,
                       "result": r.result, "checks": r.checks, "problems": r.problems,
                       "note": "; ".join(r.notes)} for r in results],
        "roles": st.roles, "physical": st.physical, "summary": summary,
    }, indent=2, default=str))
    for r in results:
        head = f"{r.result}, {r.checks} checks" if r.result == "checked" else r.result
        tail = "; ".join(r.problems) or ("; ".join(r.notes) if r.result != "checked" else "ok")
        print(f"{'PROBLEM' if r.problems else 'ok':7} {r.logical} ({r.kind}): {head}: {tail}", file=sys.stderr)
    print(f"summary: {json.dumps(summary)}", file=sys.stderr)


def delete(st, cfn, s3, bucket, declared):
    """Deletes the stack and the placeholder bucket; says what the DeletionPolicy kept."""
    cfn.delete_stack(StackName=st.name)
    while (api(cfn.describe_stacks, "ValidationError", StackName=st.name) or {"Stacks": [{}]})[
            "Stacks"][0].get("StackStatus", "").endswith("_IN_PROGRESS"):
        time.sleep(2)
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
    s3.delete_bucket(Bucket=bucket)
    print(f"deleted: stack {st.name}, bucket {bucket}", file=sys.stderr)
    for logical, res in declared["Resources"].items():  # AWS keeps these, and so should the emulator
        policy = res.get("DeletionPolicy", "")
        if policy.startswith("Retain") and st.physical.get(logical) and res["Type"] in FETCH:
            try:
                FETCH[res["Type"]](st, Result(logical, res["Type"], st.physical[logical], {}), {})
                left = "still there"
            except ClientError:
                left = "deleted by the emulator"
            print(f"after delete: {logical} (DeletionPolicy {policy}): {left}", file=sys.stderr)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--stack", required=True)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--template", type=Path,
                    default=Path(__file__).resolve().parent.parent / "template.yaml")
    ap.add_argument("--delete", action="store_true",
                    help="delete the stack and the placeholder bucket afterwards")
    args = ap.parse_args(argv[1:])
    params = dict(p.split("=", 1) for p in args.param)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "test")
    try:
        declared = translate(args.template)
        st = Stack(boto3.Session(region_name=REGION), args.endpoint, args.stack, declared, params)
        s3, cfn = st.aws("s3"), st.aws("cloudformation")
        if api(cfn.describe_stacks, "ValidationError", StackName=args.stack):
            raise ValueError(f"stack {args.stack} exists already; delete it or pick another name")
        bucket = f"{args.stack.lower()[:40].rstrip('-')}-placeholder-code-{st.account}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="placeholder.zip", Body=placeholder_zip())
    except (BotoCoreError, ClientError, OSError, ValueError) as err:
        print(f"deploy of {args.stack} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    try:
        # CloudFormation on AWS takes at most 51,200 bytes of TemplateBody (sam deploy uploads the
        # template to S3 instead); the emulator has no such limit.
        body = json.dumps(for_emulator(declared, args.stack, bucket), separators=(",", ":"))
        failed = create(st, cfn, body, [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
        if failed:
            print(f"deploy of {args.stack} failed:", *failed, sep="\n  ", file=sys.stderr)
            return 2
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=args.stack):
            for x in page["StackResourceSummaries"]:
                if x.get("LogicalResourceId"):  # moto lists the resources it skipped without one
                    st.physical[x["LogicalResourceId"]] = x.get("PhysicalResourceId") or None
                    st.types[x["LogicalResourceId"]] = x["ResourceType"]
        results = check(st, declared, st.physical)
        report(args.stack, st, results)
        return 1 if any(r.problems for r in results) else 0
    finally:
        if args.delete:
            try:
                delete(st, cfn, s3, bucket, declared)
            except (BotoCoreError, ClientError) as err:
                print(f"delete failed: {type(err).__name__}: {err}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
