"""Neural-network building blocks: the RSSM and the conv/MLP networks and heads."""
