"""Tests of infra/: the CloudFormation template (linted, deployed into moto) and the local Lambda invoker."""
