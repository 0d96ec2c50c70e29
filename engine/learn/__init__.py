"""What Vitrina learns: the fusion layer (shared space), text fine-tuning, and behaviour vectors from shopper events."""
