"""Pipelines: one diffusers pipeline for every task of an MTU model."""

from mtu.pipelines.pipeline_mtu import MTUPipeline, MTUPipelineOutput, MTURequest

__all__ = ["MTUPipeline", "MTUPipelineOutput", "MTURequest"]
