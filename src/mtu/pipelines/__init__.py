"""Pipelines: one diffusers pipeline for every task of an MTU model, and exports to stock pipelines."""

from mtu.pipelines.export import export_pipeline
from mtu.pipelines.pipeline_mtu import MTUPipeline
from mtu.pipelines.requests import MTUPipelineOutput, MTURequest

__all__ = ["MTUPipeline", "MTUPipelineOutput", "MTURequest", "export_pipeline"]
