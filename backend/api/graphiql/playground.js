// Chakor's GraphiQL: queries over HTTP POST and subscriptions over graphql-transport-ws, both to this
// page's own address. The headers pane (e.g. {"Authorization": "Bearer ..."}) is sent with every HTTP
// request and as the WebSocket's connection_init payload.
(function () {
  const url = window.location.origin + window.location.pathname;
  const subscriptionUrl = url.replace(/^http/, "ws");
  const fetcher = GraphiQL.createFetcher({ url, subscriptionUrl });
  const root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher,
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      shouldPersistHeaders: false, // a token typed into the headers pane stays out of localStorage
    }),
  );
})();
