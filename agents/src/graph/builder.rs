//! Building a graph: nodes, edges, conditional edges; `compile` checks its shape.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use catena_core::{Error, Result};

use super::node::Node;
use super::run::{CompiledGraph, GraphInner};
use super::state::{Goto, GraphState};
use super::{END, START};

/// A router: picks where the run goes after a node, from the state after the node's step.
pub(crate) type Router<S> = Arc<dyn Fn(&S) -> Vec<Goto> + Send + Sync>;

/// A conditional edge: its router and every node it may route to (declared, so `compile` can
/// check the graph's shape).
pub(crate) struct Branch<S> {
    pub router: Router<S>,
    pub targets: BTreeSet<String>,
}

/// A graph under construction. Add nodes and edges, then [`compile`](Self::compile) it.
///
/// Edges start at [`START`] or at a node and end at a node or [`END`]. A node with several
/// outgoing edges runs all their targets in the next super-step, in parallel; nodes that several
/// edges point at run once (a join). Conditional edges route by the state and may fan out a
/// list with [`Goto::Send`], one task per item. A step's tasks are scheduled, and their updates
/// applied, in a fixed order: for each node that ran, its plain edges, then its conditional
/// edges' routes, each in the order added.
pub struct StateGraph<S: GraphState> {
    nodes: BTreeMap<String, Arc<dyn Node<S>>>,
    order: Vec<String>,
    edges: Vec<(String, String)>,
    branches: Vec<(String, Branch<S>)>,
    problems: Vec<String>,
}

impl<S: GraphState> Default for StateGraph<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: GraphState> StateGraph<S> {
    /// An empty graph.
    #[must_use]
    pub fn new() -> Self {
        Self {
            nodes: BTreeMap::new(),
            order: Vec::new(),
            edges: Vec::new(),
            branches: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Adds a node (an async closure `|state, ctx| async { ... }`, a [`RunnableNode`](super::RunnableNode),
    /// a [`Subgraph`](super::Subgraph), or any [`Node`]). A name used twice, or a reserved one,
    /// is reported by [`compile`](Self::compile).
    #[must_use]
    pub fn node(mut self, name: impl Into<String>, node: impl Node<S> + 'static) -> Self {
        let name = name.into();
        if name == START || name == END || name.is_empty() {
            self.problems.push(format!("`{name}` cannot name a node (START and END are reserved)"));
        } else if self.nodes.insert(name.clone(), Arc::new(node)).is_some() {
            self.problems.push(format!("node `{name}` is added twice"));
        } else {
            self.order.push(name);
        }
        self
    }

    /// Adds an edge: after `from` runs, `to` runs in the next super-step.
    #[must_use]
    pub fn edge(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.edges.push((from.into(), to.into()));
        self
    }

    /// Adds a conditional edge: after `from` runs, `router` picks where to go from the state
    /// (one or more [`Goto`]s: nodes, sends, or END). `targets` lists every node it may pick
    /// (and [`END`] when it may end), so the graph's shape can be checked before it runs; a
    /// router that picks a node not listed fails the run with an error naming it.
    #[must_use]
    pub fn conditional_edge<R, T>(
        mut self,
        from: impl Into<String>,
        targets: impl IntoIterator<Item = T>,
        router: R,
    ) -> Self
    where
        R: Fn(&S) -> Vec<Goto> + Send + Sync + 'static,
        T: Into<String>,
    {
        let targets = targets.into_iter().map(Into::into).collect();
        self.branches.push((from.into(), Branch { router: Arc::new(router), targets }));
        self
    }

    /// Checks the graph's shape and makes it runnable. Errors name the node: an edge from or to
    /// an unknown node, no edge from START, a node no path from START reaches, a node with no
    /// path to END, a name added twice or reserved.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] with every problem found, one per line.
    pub fn compile(self) -> Result<CompiledGraph<S>> {
        let mut problems = self.problems.clone();
        let known = |name: &str| self.nodes.contains_key(name);
        let mut out: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, to) in &self.edges {
            if from == END {
                problems.push("an edge starts at END".to_owned());
            } else if from != START && !known(from) {
                problems.push(format!("an edge starts at unknown node `{from}`"));
            }
            if to == START {
                problems.push(format!("the edge from `{from}` ends at START"));
            } else if to != END && !known(to) {
                problems.push(format!("the edge from `{from}` goes to unknown node `{to}`"));
            }
            out.entry(from.as_str()).or_default().push(to.as_str());
        }
        for (from, branch) in &self.branches {
            if from != START && !known(from) {
                problems.push(format!("a conditional edge starts at unknown node `{from}`"));
            }
            if branch.targets.is_empty() {
                problems.push(format!("the conditional edge from `{from}` declares no targets"));
            }
            for to in &branch.targets {
                if to != END && !known(to) {
                    problems
                        .push(format!("the conditional edge from `{from}` may go to unknown node `{to}`"));
                }
                out.entry(from.as_str()).or_default().push(to.as_str());
            }
        }
        if !out.contains_key(START) {
            problems.push("nothing starts the graph: add an edge from START".to_owned());
        }
        // Every node reachable from START, and able to reach END.
        let reached = reach(START, &out);
        let mut into: HashMap<&str, Vec<&str>> = HashMap::new();
        for (from, tos) in &out {
            for to in tos {
                into.entry(to).or_default().push(from);
            }
        }
        let finishing = reach(END, &into);
        for name in &self.order {
            if !reached.contains(name.as_str()) {
                problems.push(format!("node `{name}` is unreachable: no path from START leads to it"));
            } else if !finishing.contains(name.as_str()) {
                problems.push(format!("node `{name}` has no path to END: add an edge from it"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::invalid_input(format!(
                "the graph does not compile:\n- {}",
                problems.join("\n- ")
            )));
        }
        let mut edges: HashMap<String, Vec<String>> = HashMap::new();
        for (from, to) in self.edges {
            edges.entry(from).or_default().push(to);
        }
        let mut branches: HashMap<String, Vec<Branch<S>>> = HashMap::new();
        for (from, branch) in self.branches {
            branches.entry(from).or_default().push(branch);
        }
        Ok(CompiledGraph::new(GraphInner { nodes: self.nodes, edges, branches }))
    }
}

/// Every name reachable from `from` along `links` (including `from`).
fn reach<'a>(from: &'a str, links: &HashMap<&'a str, Vec<&'a str>>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([from]);
    let mut queue = VecDeque::from([from]);
    while let Some(at) = queue.pop_front() {
        for next in links.get(at).into_iter().flatten() {
            if seen.insert(next) {
                queue.push_back(next);
            }
        }
    }
    seen
}
