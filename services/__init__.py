"""The shared kit every openchatkit service imports: settings, logging, errors,
OpenAI protocol models, the HTTP client lifecycle, health and metrics. Import from the
modules (``services.errors``, ``services.http``, ...)."""
