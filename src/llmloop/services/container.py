"""The composition root: builds the store, artifact store, plugin registry and every service
from Settings, once per process (or per test). Edges hold one Container and call its services.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from llmloop.artifacts.fsspec_store import FsspecArtifactStore
from llmloop.config import Settings
from llmloop.errors import ConfigError
from llmloop.plugins import PluginRegistry, build_registry
from llmloop.services.datasets import DatasetService
from llmloop.services.deployments import DeploymentService
from llmloop.services.governance import GovernanceService
from llmloop.services.keys import KeyService
from llmloop.services.models import ModelService
from llmloop.services.pipelines import PipelineService
from llmloop.services.prompts import PromptService
from llmloop.services.runs import RunService
from llmloop.store.registry import Store

if TYPE_CHECKING:
    from llmloop.services.alerts import AlertService
    from llmloop.services.annotation import AnnotationService
    from llmloop.services.curation import CurationService
    from llmloop.services.data import DataService
    from llmloop.services.drift import DriftService
    from llmloop.services.evaluation import EvaluationService
    from llmloop.services.feedback import FeedbackService
    from llmloop.services.gateway.service import GatewayService
    from llmloop.services.monitoring import MonitoringService
    from llmloop.services.otlp import OtlpIngest
    from llmloop.services.rollout import RolloutService
    from llmloop.services.training import TrainingService
    from llmloop.services.triggers import TriggerService


class Container:
    def __init__(self, settings: Settings, plugins: PluginRegistry | None = None) -> None:
        self.settings = settings
        self._plugins = plugins

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.database_url, auto_create_empty=self.settings.auto_migrate_empty)

    @cached_property
    def artifacts(self) -> FsspecArtifactStore:
        try:
            return FsspecArtifactStore(
                self.settings.artifacts_url, cache_dir=self.settings.home / "cache" / "artifacts"
            )
        except (ValueError, ImportError) as exc:  # fsspec: unknown protocol, missing driver
            raise ConfigError(f"cannot use artifacts_url {self.settings.artifacts_url!r}: {exc}")

    @cached_property
    def plugins(self) -> PluginRegistry:
        return self._plugins if self._plugins is not None else build_registry()

    @cached_property
    def datasets(self) -> DatasetService:
        return DatasetService(self.store, self.artifacts)

    @cached_property
    def prompts(self) -> PromptService:
        return PromptService(self.store)

    @cached_property
    def runs(self) -> RunService:
        return RunService(self.store)

    @cached_property
    def models(self) -> ModelService:
        return ModelService(self.store)

    @cached_property
    def governance(self) -> GovernanceService:
        return GovernanceService(self.store, self.settings.allow_self_approval)

    @cached_property
    def keys(self) -> KeyService:
        return KeyService(self.store)

    @cached_property
    def deployments(self) -> DeploymentService:
        return DeploymentService(self.store)

    @cached_property
    def gateway(self) -> GatewayService:
        from llmloop.services.gateway.wiring import build_gateway

        return build_gateway(self)

    @cached_property
    def otlp(self) -> OtlpIngest:
        from llmloop.services.otlp import OtlpIngest

        return OtlpIngest(self.gateway.writer)

    @cached_property
    def evaluation(self) -> EvaluationService:
        from llmloop.services.evaluation import EvaluationService

        return EvaluationService(self)

    @cached_property
    def data(self) -> DataService:
        from llmloop.services.data import DataService

        return DataService(self)

    @cached_property
    def rollout(self) -> RolloutService:
        from llmloop.services.rollout import RolloutService

        return RolloutService(self)

    @cached_property
    def triggers(self) -> TriggerService:
        from llmloop.services.triggers import TriggerService

        return TriggerService(self)

    @cached_property
    def training(self) -> TrainingService:
        from llmloop.services.training import TrainingService

        return TrainingService(self)

    @cached_property
    def pipelines(self) -> PipelineService:
        return PipelineService(
            self.store, self, lambda kind: self.plugins.resolve("pipeline_steps", kind)
        )

    @cached_property
    def feedback(self) -> FeedbackService:
        from llmloop.services.feedback import FeedbackService

        return FeedbackService(self.store)

    @cached_property
    def annotation(self) -> AnnotationService:
        from llmloop.services.annotation import AnnotationService

        return AnnotationService(self.store, self.datasets)

    @cached_property
    def monitoring(self) -> MonitoringService:
        from llmloop.services.monitoring import MonitoringService

        return MonitoringService(self.store)

    @cached_property
    def drift(self) -> DriftService:
        from llmloop.services.drift import DriftService

        return DriftService(self.store, self.datasets)

    @cached_property
    def alerts(self) -> AlertService:
        from llmloop.services.alerts import AlertService

        return AlertService(
            self.store,
            self.monitoring,
            webhook_timeout_s=self.settings.alert_webhook_timeout_s,
            webhook_retries=self.settings.alert_webhook_retries,
        )

    @cached_property
    def curation(self) -> CurationService:
        from llmloop.services.curation import CurationService

        return CurationService(self.store, self.datasets)

    def readiness_problem(self) -> str | None:
        """None when the store answers; otherwise what is wrong."""
        return self.store.ping()

    def close(self) -> None:
        if "monitoring" in self.__dict__:
            self.monitoring.close()
        if "store" in self.__dict__:
            self.store.dispose()
