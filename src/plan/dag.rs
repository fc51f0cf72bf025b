//! The step graph: edges run from a step to the steps that list it in `after`.

use std::collections::{BTreeSet, HashSet};

use indexmap::IndexMap;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};
use petgraph::Direction;

#[derive(Debug, Clone, Default)]
pub struct Dag {
    graph: DiGraph<String, ()>,
    index: IndexMap<String, NodeIndex>,
}

impl Dag {
    /// `steps` in declaration order, each with the names it runs after. Names that are not
    /// steps are ignored here (validation reports them).
    pub fn build<'a>(steps: impl IntoIterator<Item = (&'a str, &'a [String])> + Clone) -> Self {
        let mut dag = Dag::default();
        for (name, _) in steps.clone() {
            let ix = dag.graph.add_node(name.to_string());
            dag.index.insert(name.to_string(), ix);
        }
        for (name, after) in steps {
            let to = dag.index[name];
            for dep in after {
                if let Some(&from) = dag.index.get(dep.as_str()) {
                    dag.graph.update_edge(from, to, ());
                }
            }
        }
        dag
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Every cycle as a closed path `[a, b, …, a]` where each step runs after the next one.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let members: HashSet<NodeIndex> = scc.iter().copied().collect();
            // Start at the first-declared member so the report is stable.
            let start = *scc.iter().min().unwrap_or(&scc[0]);
            let mut path = vec![start];
            let mut seen = HashSet::from([start]);
            let mut cur = start;
            // Walk dependencies (incoming edges) inside the component until we return.
            loop {
                let mut deps: Vec<NodeIndex> = self
                    .graph
                    .neighbors_directed(cur, Direction::Incoming)
                    .filter(|n| members.contains(n))
                    .collect();
                deps.sort();
                let next = deps
                    .iter()
                    .find(|n| **n == start)
                    .or_else(|| deps.iter().find(|n| !seen.contains(n)));
                match next {
                    Some(&n) if n == start => {
                        path.push(start);
                        break;
                    }
                    Some(&n) => {
                        seen.insert(n);
                        path.push(n);
                        cur = n;
                    }
                    None => {
                        // Dead end inside the component: fall back to listing its members.
                        path.push(start);
                        break;
                    }
                }
            }
            out.push(path.into_iter().map(|ix| self.graph[ix].clone()).collect());
        }
        out
    }

    /// Steps grouped by depth: a step sits one layer below its deepest dependency.
    /// Only meaningful for an acyclic graph.
    pub fn layers(&self) -> Vec<Vec<String>> {
        let order = match petgraph::algo::toposort(&self.graph, None) {
            Ok(o) => o,
            Err(_) => return vec![self.index.keys().cloned().collect()],
        };
        let mut depth = vec![0usize; self.graph.node_count()];
        for ix in &order {
            for succ in self.graph.neighbors_directed(*ix, Direction::Outgoing) {
                depth[succ.index()] = depth[succ.index()].max(depth[ix.index()] + 1);
            }
        }
        let max = depth.iter().copied().max().unwrap_or(0);
        let mut layers = vec![Vec::new(); if self.index.is_empty() { 0 } else { max + 1 }];
        for (name, ix) in &self.index {
            layers[depth[ix.index()]].push(name.clone());
        }
        layers
    }

    /// Direct dependencies of `name`, in declaration order.
    pub fn deps(&self, name: &str) -> Vec<&str> {
        self.neighbors(name, Direction::Incoming)
    }

    /// Steps that list `name` in `after`.
    pub fn dependents(&self, name: &str) -> Vec<&str> {
        self.neighbors(name, Direction::Outgoing)
    }

    fn neighbors(&self, name: &str, dir: Direction) -> Vec<&str> {
        let Some(&ix) = self.index.get(name) else {
            return Vec::new();
        };
        let mut v: Vec<NodeIndex> = self.graph.neighbors_directed(ix, dir).collect();
        v.sort();
        v.into_iter().map(|n| self.graph[n].as_str()).collect()
    }

    /// Every step that must finish before `name` starts (transitively).
    pub fn ancestors(&self, name: &str) -> BTreeSet<String> {
        let Some(&ix) = self.index.get(name) else {
            return BTreeSet::new();
        };
        let rev = Reversed(&self.graph);
        let mut dfs = Dfs::new(rev, ix);
        let mut out = BTreeSet::new();
        while let Some(n) = dfs.next(rev) {
            if n != ix {
                out.insert(self.graph[n].clone());
            }
        }
        out
    }

    /// Edges as `(from, to)` names, for `ttplan graph`.
    pub fn edges(&self) -> Vec<(&str, &str)> {
        self.graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a].as_str(), self.graph[b].as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(spec: &[(&str, &[&str])]) -> Dag {
        let owned: Vec<(String, Vec<String>)> = spec
            .iter()
            .map(|(n, a)| (n.to_string(), a.iter().map(|s| s.to_string()).collect()))
            .collect();
        Dag::build(owned.iter().map(|(n, a)| (n.as_str(), a.as_slice())))
    }

    #[test]
    fn layers_follow_the_longest_path() {
        let d = dag(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
            ("e", &[]),
        ]);
        assert_eq!(d.layers(), vec![vec!["a", "e"], vec!["b", "c"], vec!["d"]]);
        assert_eq!(
            d.ancestors("d").into_iter().collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert_eq!(d.dependents("a"), vec!["b", "c"]);
    }

    #[test]
    fn cycles_are_reported_as_paths() {
        let d = dag(&[
            ("a", &["c"]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("x", &["x"]),
            ("y", &[]),
        ]);
        let cycles = d.cycles();
        assert_eq!(cycles.len(), 2);
        assert!(
            cycles.contains(&vec!["a".into(), "c".into(), "b".into(), "a".into()]),
            "{cycles:?}"
        );
        assert!(cycles.contains(&vec!["x".into(), "x".into()]));
    }
}
