"""Translate the SAM template to plain CloudFormation, offline, to prove the transform accepts it.

Usage: python infra/translate_template.py [TEMPLATE] [--output FILE]
  TEMPLATE       the SAM template (default: template.yaml at the repo root)
  --output FILE  also write the translated CloudFormation there, as JSON (e.g. to lint it)

Needs aws-sam-translator in the running interpreter (infra/check-template.sh installs it).
Prints "translated: N resources" and exits 0 on success; prints the error and exits 1 otherwise.

No AWS account or credentials are used. The translator only asks IAM for the list of AWS managed
policies when a function names one in `Policies`; the template uses an explicit role instead, so a
stub loader that knows no managed policies is enough. If a managed policy is ever named, the
translation fails here, and this stub needs a real name-to-ARN map.

The transform runs on the template that `sam package` (or `sam deploy`) uploads, where local code
paths such as `CodeUri: .` have become S3 locations; given a local path it fails. So, like
`sam package` and cfn-lint, this script first replaces each local path with a placeholder S3 URI.
"""

import argparse
import json
import os
import sys
from pathlib import Path

# The translator builds ARNs for the session's region; any region will do offline.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.translator.transform import transform  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


# Properties that `sam package` rewrites from a local path to an S3 location, by resource type.
PACKAGED_PATHS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
PLACEHOLDER_S3_URI = "s3://sluice-placeholder-artifacts/{name}.zip"


def as_packaged(template):
    """Replaces local artifact paths with placeholder S3 URIs, as `sam package` would."""
    sections = [("Globals", spec) for spec in (template.get("Globals") or {}).values()]
    sections += [
        (res.get("Type"), res.get("Properties"))
        for res in (template.get("Resources") or {}).values()
        if isinstance(res, dict)
    ]
    for kind, props in sections:
        if not isinstance(props, dict):
            continue
        keys = ["CodeUri", "ContentUri", "DefinitionUri"] if kind == "Globals" else [PACKAGED_PATHS.get(kind)]
        for key in keys:
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = PLACEHOLDER_S3_URI.format(name=key.lower())
    return template


class NoManagedPolicies:
    """Stands in for samtranslator's ManagedPolicyLoader without calling IAM."""

    def load(self):
        return {}


def translate(path):
    """Returns the CloudFormation template the SAM transform makes of the template at `path`.

    Raises on any failure, including an empty result or one that still has a Transform.
    """
    template = as_packaged(yaml_parse(Path(path).read_text(encoding="utf-8")))
    output = transform(template, {}, NoManagedPolicies())
    if not output.get("Resources"):
        raise ValueError("the translated template has no resources")
    if "Transform" in output:
        raise ValueError("the translated template still has a Transform")
    return output


def main(argv):
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description="Translate the SAM template to CloudFormation.")
    parser.add_argument("template", nargs="?", type=Path, default=root / "template.yaml")
    parser.add_argument("--output", type=Path, help="write the translated template here (JSON)")
    args = parser.parse_args(argv[1:])
    path = args.template
    try:
        output = translate(path)
        resources = output["Resources"]
        if args.output:
            args.output.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    except Exception as err:  # noqa: BLE001 - any failure is reported the same way
        print(f"translate failed: {path}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    print(f"translated: {len(resources)} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
