"""The cell search space: ops, genotypes, the weight-shared supernet and the standalone net."""
