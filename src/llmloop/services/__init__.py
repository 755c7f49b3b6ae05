"""Services: the use cases of llmloop. Edges call these; these call adapters through contracts."""
