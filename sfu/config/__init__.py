"""The server's configuration: the typed model (:mod:`sfu.config.model`: every
key, its default and its constraints) and its loading (:mod:`sfu.config.loading`:
the TOML file, ``SFU_*`` environment overrides, clear errors naming the key).

Importing it loads neither the media plane nor the web server: the signalling
process, the media workers and the CLI all read it.
"""

from .loading import (
    ENVIRONMENT_OVERRIDES,
    apply_overrides,
    check_tls_files,
    config_from_dict,
    detect_announced_ip,
    environment_overrides,
    load_config,
)
from .model import (
    DEFAULT_MEDIA_CODECS,
    EVENT_LOOPS,
    LOG_LEVELS,
    MEDIA_KINDS,
    MIN_SECRET_BYTES,
    AuthConfig,
    Config,
    HttpConfig,
    IceServerConfig,
    LimitsConfig,
    LogConfig,
    MediaCodecConfig,
    MediaConfig,
    RecordingConfig,
    RouterConfig,
    ServerConfig,
    SignalingConfig,
    TlsConfig,
    WorkersConfig,
)

__all__ = [
    "DEFAULT_MEDIA_CODECS",
    "ENVIRONMENT_OVERRIDES",
    "EVENT_LOOPS",
    "LOG_LEVELS",
    "MEDIA_KINDS",
    "MIN_SECRET_BYTES",
    "AuthConfig",
    "Config",
    "HttpConfig",
    "IceServerConfig",
    "LimitsConfig",
    "LogConfig",
    "MediaCodecConfig",
    "MediaConfig",
    "RecordingConfig",
    "RouterConfig",
    "ServerConfig",
    "SignalingConfig",
    "TlsConfig",
    "WorkersConfig",
    "apply_overrides",
    "check_tls_files",
    "config_from_dict",
    "detect_announced_ip",
    "environment_overrides",
    "load_config",
]
