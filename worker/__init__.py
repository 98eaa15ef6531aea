"""The asynchronous side: outbox relay and dramatiq workers."""
